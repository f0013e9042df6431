// Exits 0 when this kernel lets a process create an io_uring instance.
#include <liburing.h>
int main() {
  io_uring ring;
  if (io_uring_queue_init(8, &ring, 0) != 0) return 1;
  io_uring_queue_exit(&ring);
  return 0;
}
