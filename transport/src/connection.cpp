// The connection's I/O, all on one strand: a run loop coroutine (connect, handshake, read replies,
// reconnect), a writer, and a watchdog timer for request deadlines. What to write, which request
// a reply belongs to and what a deadline means are decided by detail::multiplexer.
#include <sagaflow/engine/log.hpp>
#include <sagaflow/transport/commands.hpp>
#include <sagaflow/transport/connection.hpp>
#include <sagaflow/transport/detail/multiplexer.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace sagaflow::transport {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using boost::system::system_error;

namespace {

// One TCP connection, with TLS on top when configured. Kept alive by a shared_ptr in every
// operation in progress, so that replacing it on reconnect never frees a buffer the kernel
// (io_uring) may still read.
struct link {
  std::optional<tcp::socket> plain;
  std::optional<asio::ssl::stream<tcp::socket>> secure;

  tcp::socket& socket() { return secure ? secure->next_layer() : *plain; }
  void close() {
    if (!plain && !secure) return;
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
  }
};

// Links of a connection whose execution context is shutting down. Destroyed by the scheduler's
// own shutdown (the last service to shut down), after the reactor's shutdown has taken back
// every operation, so no buffer of theirs is freed under the kernel. Their sockets are destroyed
// then even if a coroutine frame still holds the link: such a frame may be destroyed later.
// What a system_error says before its code's own text: "HELLO: WRONGPASS ..." for
// system_error(error::handshake_failed, "HELLO: WRONGPASS ..."), so that wrapping it again in a
// system_error of the same code does not repeat the code's message.
std::string context_of(const system_error& e) {
  std::string text = e.what();
  const std::string code_text = ": " + e.code().what();
  if (text.ends_with(code_text)) text.resize(text.size() - code_text.size());
  return text;
}

// The io_context under an executor (through strands), or null.
asio::io_context* io_context_of(const asio::any_io_executor& ex) {
  if (auto* io = ex.target<asio::io_context::executor_type>()) return &io->context();
  if (auto* s = ex.target<asio::strand<asio::any_io_executor>>()) return io_context_of(s->get_inner_executor());
  if (auto* s = ex.target<asio::strand<asio::io_context::executor_type>>()) return &s->get_inner_executor().context();
  return nullptr;
}

struct link_graveyard {
  std::vector<std::shared_ptr<link>> links;
  link_graveyard() = default;
  link_graveyard(link_graveyard&&) = default;
  link_graveyard& operator=(link_graveyard&&) = default;
  ~link_graveyard() {
    for (auto& l : links) {
      l->secure.reset();
      l->plain.reset();
    }
  }
};

constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t max_write_batch = 4 * 1024 * 1024;

}  // namespace

struct connection::impl {
  connection& owner;
  std::optional<asio::ssl::context> tls_context;
  std::shared_ptr<link> current;
  std::shared_ptr<link> opening;  // the link open() is building, for release()
  resp::parser parser;
  std::vector<char> read_buffer = std::vector<char>(2 * read_chunk);
  std::size_t read_begin = 0, read_end = 0;
  detail::multiplexer mux;
  std::uint64_t generation = 0;
  bool is_connected = false;
  bool closed = false;
  // Optional so that release() can destroy them while the context's services still exist.
  std::optional<asio::steady_timer> watchdog;
  std::optional<asio::steady_timer> reconnect_timer;

  explicit impl(connection& c) : owner(c), mux(c.cfg_.command_timeout, max_write_batch) {
    watchdog.emplace(*c.strand_);
    reconnect_timer.emplace(*c.strand_);
  }

  asio::strand<asio::any_io_executor>& strand() { return *owner.strand_; }

  // --- requests ---------------------------------------------------------------------------
  void enqueue(request req, exec_handler handler, std::uint64_t id) {
    if (closed) {
      std::move(handler)(error::closed, response{});
      return;
    }
    if (auto at = mux.add(id, std::move(req), std::move(handler), steady_clock::now())) arm_watchdog(*at);
    start_write();
  }

  void start_write() {
    if (!is_connected) return;
    auto bytes = mux.prepare_write();
    if (bytes.empty()) return;
    auto on_written = asio::bind_executor(
        strand(), [self = owner.shared_from_this(), l = current, gen = generation](error_code ec, std::size_t) {
          auto& me = *self->impl_;
          me.mux.commit_write();
          if (gen != me.generation) {  // written to a connection that has since been replaced
            me.start_write();
            return;
          }
          if (ec) {
            log::warn("redis", self->cfg_.describe(), ": write failed: ", log::error_text(ec));
            l->close();  // the read loop sees the error and reconnects
            return;
          }
          me.start_write();
        });
    if (current->secure)
      asio::async_write(*current->secure, asio::buffer(bytes), std::move(on_written));
    else
      asio::async_write(*current->plain, asio::buffer(bytes), std::move(on_written));
  }

  // --- deadlines --------------------------------------------------------------------------
  void arm_watchdog(steady_clock::time_point at) {
    watchdog->expires_at(at);
    watchdog->async_wait([self = owner.shared_from_this()](error_code ec) {
      if (ec == asio::error::operation_aborted) return;  // re-armed earlier, or closed
      self->impl_->on_watchdog();
    });
  }

  void on_watchdog() {
    auto verdict = mux.on_watchdog(steady_clock::now());
    if (verdict.stuck) {
      log::warn("redis", owner.cfg_.describe(), ": ", verdict.command, " got no reply in time; reconnecting");
      if (current) current->close();
    }
    if (verdict.next) arm_watchdog(*verdict.next);
  }

  // --- connection life --------------------------------------------------------------------
  awaitable<std::size_t> read_some(link& l) {
    if (read_buffer.size() - read_end < read_chunk) {
      if (read_begin > 0) {
        std::copy(read_buffer.begin() + static_cast<std::ptrdiff_t>(read_begin),
                  read_buffer.begin() + static_cast<std::ptrdiff_t>(read_end), read_buffer.begin());
        read_end -= read_begin;
        read_begin = 0;
      }
      if (read_buffer.size() - read_end < read_chunk) read_buffer.resize(read_end + 2 * read_chunk);
    }
    auto buf = asio::buffer(read_buffer.data() + read_end, read_buffer.size() - read_end);
    std::size_t n = l.secure ? co_await l.secure->async_read_some(buf, asio::use_awaitable)
                             : co_await l.plain->async_read_some(buf, asio::use_awaitable);
    read_end += n;
    co_return n;
  }

  // Parses what is buffered; each complete reply goes to `sink`. Throws on corrupt input.
  template <typename Sink>
  void parse_buffered(Sink&& sink) {
    while (read_begin < read_end) {
      auto r = parser.feed(std::string_view(read_buffer.data() + read_begin, read_end - read_begin));
      read_begin += r.consumed;
      if (r.error != resp::parse_error::none)
        throw system_error(error::protocol_error, std::string(resp::to_string(r.error)));
      if (!r.complete) break;
      sink(parser.take());
    }
    if (read_begin == read_end) read_begin = read_end = 0;
  }

  // Sends the handshake pipeline and returns its replies (used before the read loop starts).
  awaitable<response> roundtrip(link& l, const request& req) {
    if (l.secure)
      co_await asio::async_write(*l.secure, asio::buffer(req.payload()), asio::use_awaitable);
    else
      co_await asio::async_write(*l.plain, asio::buffer(req.payload()), asio::use_awaitable);
    response replies;
    for (;;) {
      parse_buffered([&](resp::value&& v) {
        if (v.type != resp::type::push) replies.push_back(std::move(v));
      });
      if (replies.size() >= req.size()) co_return replies;
      co_await read_some(l);
    }
  }

  awaitable<void> handshake(link& l, int protocol) {
    const auto& cfg = owner.cfg_;
    request req;
    if (protocol == 3) {
      bool auth = !cfg.password.empty();
      req.begin(2 + (auth ? 3 : 0) + 2).arg("HELLO").arg("3");
      if (auth) req.arg("AUTH").arg(cfg.username.empty() ? "default" : cfg.username).arg(cfg.password);
      req.arg("SETNAME").arg(cfg.client_name);
    } else {
      if (!cfg.password.empty()) {
        if (cfg.username.empty())
          req.push("AUTH", cfg.password);
        else
          req.push("AUTH", cfg.username, cfg.password);
      }
      req.push("CLIENT", "SETNAME", cfg.client_name);
    }
    if (cfg.database != 0) req.push("SELECT", cfg.database);
    auto replies = co_await roundtrip(l, req);
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (!replies[i].is_error()) continue;
      const std::string& text = replies[i].text;
      if (protocol == 3 && i == 0 && (text.starts_with("NOPROTO") || text.find("unknown command") != std::string::npos)) {
        log::info("redis", cfg.describe(), ": server has no RESP3 (", text, "); using RESP2");
        co_return co_await handshake(l, 2);
      }
      std::string name(req.command_name(i));
      throw system_error(error::handshake_failed, name + ": " + text);
    }
    protocol_in_use = protocol;
  }
  int protocol_in_use = 2;

  // A restarted server accepts connections while it loads its dataset and answers -LOADING to
  // almost everything until it is done. As ioredis' ready check does, the link counts as
  // connected (and queued requests are written) only once INFO says loading:0; meanwhile the
  // requests wait within their own timeouts. Each INFO is bounded by connect_timeout, the wait
  // as a whole only by close() (and by the caller of connect()). A server that refuses INFO
  // (ACL, renamed command) cannot tell: it is taken as loaded.
  awaitable<void> wait_until_loaded(link& l) {
    const auto& cfg = owner.cfg_;
    request info;
    info.push("INFO", "persistence");
    std::optional<steady_clock::time_point> since;
    for (;;) {
      auto replies = co_await with_timeout(roundtrip(l, info), cfg.connect_timeout);
      if (!replies.front().is_string()) {
        log::debug("redis", cfg.describe(), ": INFO refused (", replies.front().text, "); not checking for loading");
        co_return;
      }
      auto state = parse_loading(replies.front().text);
      if (!state.loading) {
        if (since)
          log::info("redis", cfg.describe(), ": dataset loaded after ",
                    std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - *since).count(), " ms");
        co_return;
      }
      if (!since) {
        since = steady_clock::now();
        log::info("redis", cfg.describe(), ": server is loading its dataset (about ", state.eta.count(),
                  " s left); requests wait until it is done");
      }
      // Polls often near the end, at most every second for a long load.
      auto delay = std::clamp<std::chrono::milliseconds>(state.eta / 4, std::chrono::milliseconds(100),
                                                         std::chrono::milliseconds(1000));
      reconnect_timer->expires_after(delay);  // idle while a link is being opened; close() cancels it
      error_code ec;
      co_await reconnect_timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (closed) throw system_error(error::closed);
    }
  }

  // Opens a new link: TCP connect, TLS handshake, HELLO/AUTH/SELECT; all within connect_timeout.
  awaitable<void> open() {
    const auto& cfg = owner.cfg_;
    auto l = std::make_shared<link>();
    opening = l;
    if (cfg.tls)
      l->secure.emplace(strand(), *tls_context);
    else
      l->plain.emplace(strand());
    parser.reset();
    read_begin = read_end = 0;

    auto steps = [&]() -> awaitable<void> {
      error_code ec;
      auto address = asio::ip::make_address(cfg.host, ec);
      if (!ec) {
        co_await l->socket().async_connect(tcp::endpoint(address, cfg.port), asio::use_awaitable);
      } else {
        tcp::resolver resolver(strand());
        auto endpoints = co_await resolver.async_resolve(cfg.host, std::to_string(cfg.port), asio::use_awaitable);
        co_await asio::async_connect(l->socket(), endpoints, asio::use_awaitable);
      }
      l->socket().set_option(tcp::no_delay(true));
      l->socket().set_option(asio::socket_base::keep_alive(true));
      if (l->secure) {
        const std::string& name = cfg.tls_server_name.empty() ? cfg.host : cfg.tls_server_name;
        if (!SSL_set_tlsext_host_name(l->secure->native_handle(), name.c_str()))
          throw system_error(error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()), "TLS SNI");
        if (cfg.tls_verify) {
          l->secure->set_verify_mode(asio::ssl::verify_peer);
          l->secure->set_verify_callback(asio::ssl::host_name_verification(name));
        } else {
          l->secure->set_verify_mode(asio::ssl::verify_none);
        }
        co_await l->secure->async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
      }
      co_await handshake(*l, cfg.protocol);
    };
    try {
      co_await with_timeout(steps(), cfg.connect_timeout);
    } catch (const system_error& e) {
      l->close();
      opening.reset();
      if (e.code() == asio::error::timed_out)
        throw system_error(error::timeout, "connecting to " + cfg.describe() + " took longer than " +
                                               std::to_string(cfg.connect_timeout.count()) + " ms");
      // Our own errors carry the server's text (e.g. WRONGPASS); system errors say enough alone.
      if (&e.code().category() == &error_category())
        throw system_error(e.code(), "connecting to " + cfg.describe() + ": " + context_of(e));
      throw system_error(e.code(), "connecting to " + cfg.describe());
    }
    try {
      co_await wait_until_loaded(*l);
    } catch (const system_error& e) {
      l->close();
      opening.reset();
      if (e.code() == asio::error::timed_out)
        throw system_error(error::timeout, "connecting to " + cfg.describe() + ": INFO got no reply within " +
                                               std::to_string(cfg.connect_timeout.count()) + " ms");
      throw;
    }
    opening.reset();
    current = std::move(l);
    ++generation;
    is_connected = true;
    owner.protocol_.store(protocol_in_use);
    owner.connected_.store(true);
    start_write();
  }

  // Reads replies until the link fails; returns why.
  awaitable<error_code> read_loop() {
    auto l = current;
    try {
      for (;;) {
        parse_buffered([&](resp::value&& v) {
          if (!mux.on_reply(std::move(v)))
            throw system_error(error::protocol_error, "reply with no request waiting for it");
        });
        co_await read_some(*l);
      }
    } catch (const system_error& e) {
      if (!closed) log::warn("redis", owner.cfg_.describe(), ": connection lost: ", log::error_text(e));
      co_return e.code();
    }
  }

  void drop_link(error_code why) {
    is_connected = false;
    owner.connected_.store(false);
    if (current) current->close();
    mux.on_connection_lost(why);
  }

  awaitable<void> run() {
    auto self = owner.shared_from_this();  // alive until close()
    random_source random = random_source::from_entropy();
    while (!closed) {
      auto ec = co_await read_loop();
      drop_link(ec);
      if (closed) break;
      if (!owner.cfg_.reconnect) {
        closed = true;
        mux.fail_all(error::connection_lost);  // the written ones failed in drop_link
        break;
      }
      std::chrono::milliseconds delay{0};
      for (std::uint32_t attempt = 1; !closed; ++attempt) {
        delay = owner.cfg_.reconnect_backoff.delay(attempt, random, delay);
        reconnect_timer->expires_after(delay);
        error_code wait_ec;
        co_await reconnect_timer->async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
        if (closed) break;
        try {
          co_await open();
          owner.reconnects_.fetch_add(1);
          log::info("redis", owner.cfg_.describe(), ": reconnected after ", attempt, " attempt(s)");
          break;
        } catch (const system_error& e) {
          log::warn("redis", "reconnect attempt ", attempt, " failed: ", log::error_text(e));
        }
      }
    }
  }

  awaitable<void> first_connect() {
    auto self = owner.shared_from_this();
    if (closed) throw system_error(error::closed);
    if (is_connected) co_return;
    co_await open();
    sagaflow::spawn(strand(), run(), "redis connection " + owner.cfg_.describe());
  }

  void shut() {
    if (closed) return;
    closed = true;
    is_connected = false;
    owner.connected_.store(false);
    if (current) current->close();
    reconnect_timer->cancel();
    watchdog->cancel();
    mux.fail_all(error::closed);
  }

  // The execution context is shutting down (called by its connection_service, on the thread
  // destroying it, with nothing of the context running). Closes the link and destroys the timers
  // now, while the services they belong to exist. Coroutine frames and operations still holding
  // the link are destroyed by Asio later in the same shutdown (after io_uring has returned every
  // buffer). Pending requests are dropped, not completed: their callers' executors may be
  // shutting down too, and dropping them breaks the cycle caller -> connection -> handler ->
  // caller that would otherwise leak them.
  void release() {
    closed = true;
    is_connected = false;
    owner.connected_.store(false);
    // Not closed here: closing a socket with an operation in flight leaves that operation with
    // the io_uring reactor until the kernel confirms the cancellation, which a context that is
    // shutting down never processes; the reactor then destroys it (and the coroutine frame
    // waiting on it) only when it is itself deleted, after the timer service. Left open, the
    // reactor's shutdown takes every operation back and destroys them in this shutdown step.
    link_graveyard graveyard;
    for (auto* l : {&current, &opening})
      if (*l) graveyard.links.push_back(std::move(*l));
    if (!graveyard.links.empty()) {
      if (auto* io = io_context_of(strand().get_inner_executor()))
        asio::post(*io, [g = std::move(graveyard)] {});  // never runs: destroyed by the shutdown
      // On another kind of executor the sockets go now (closed, their operations cancelled).
    }
    watchdog.reset();
    reconnect_timer.reset();
    mux.drop_all();
  }
};

// --- teardown -------------------------------------------------------------------------------
// Asio destroys an execution context in two steps: every service is shut down (pending
// operations and queued handlers are destroyed, and with them the coroutine frames waiting on
// them), then every service is deleted, the scheduler last. A connection may outlive both steps:
// the user holds it, or its pending requests hold their callers' frames which hold it. Its
// sockets, timers and strand must not: their destructors call into the services. So each
// context gets a connection_service, and its shutdown() makes every live connection on that
// context release() them during the first step.
struct connection::registry {
  std::mutex mutex;
  bool gone = false;  // the context has shut down: connections release themselves, not deregister
  std::unordered_map<const connection*, std::weak_ptr<connection>> live;

  void shutdown() {
    std::vector<std::weak_ptr<connection>> all;
    {
      std::lock_guard lock(mutex);
      gone = true;
      all.reserve(live.size());
      for (auto& entry : live) all.push_back(entry.second);
      live.clear();
    }
    // Outside the lock: releasing one connection can destroy frames that destroy another.
    for (auto& weak : all)
      if (auto c = weak.lock()) c->release();
  }
};

namespace {
class connection_service final : public asio::execution_context::service {
 public:
  using key_type = connection_service;
  static asio::execution_context::id id;

  explicit connection_service(asio::execution_context& ctx)
      : asio::execution_context::service(ctx), registry(std::make_shared<connection::registry>()) {}
  void shutdown() override { registry->shutdown(); }

  const std::shared_ptr<connection::registry> registry;
};
asio::execution_context::id connection_service::id;
}  // namespace

void connection::release() {
  context_gone_.store(true, std::memory_order_release);
  impl_->release();
  strand_.reset();  // a strand's implementation unregisters from its service when destroyed
}

connection::executor_type connection::get_executor() const {
  if (context_gone_.load(std::memory_order_acquire) || !strand_)
    throw std::logic_error("sagaflow::transport::connection: its execution context was destroyed");
  return *strand_;
}

std::shared_ptr<connection> connection::create(asio::any_io_executor ex, transport::config cfg) {
  cfg.reconnect_backoff.validate();
  auto& ctx = asio::query(ex, asio::execution::context);
  auto c = std::shared_ptr<connection>(new connection(std::move(ex), std::move(cfg)));
  c->registry_ = asio::use_service<connection_service>(ctx).registry;
  std::lock_guard lock(c->registry_->mutex);
  if (c->registry_->gone) throw std::logic_error("sagaflow::transport::connection: its execution context is shutting down");
  c->registry_->live.emplace(c.get(), c);
  return c;
}

connection::connection(asio::any_io_executor ex, transport::config cfg)
    : strand_(asio::make_strand(std::move(ex))), cfg_(std::move(cfg)), impl_(std::make_unique<impl>(*this)) {
  if (cfg_.tls) {
    try {
      auto& ctx = impl_->tls_context.emplace(asio::ssl::context::tls_client);
      ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3);
      if (cfg_.tls_ca_file.empty())
        ctx.set_default_verify_paths();
      else
        ctx.load_verify_file(cfg_.tls_ca_file);
      if (!cfg_.tls_cert_file.empty()) ctx.use_certificate_chain_file(cfg_.tls_cert_file);
      if (!cfg_.tls_key_file.empty()) ctx.use_private_key_file(cfg_.tls_key_file, asio::ssl::context::pem);
    } catch (const system_error& e) {
      throw std::invalid_argument("Redis TLS configuration: " + log::error_text(e));
    }
  }
}

connection::~connection() {
  if (!registry_) return;
  std::lock_guard lock(registry_->mutex);
  if (!registry_->gone) registry_->live.erase(this);
}

awaitable<void> connection::connect() {
  // A member coroutine, not a lambda: GCC 12 destroys a closure temporary that appears in a
  // co_await expression twice (it would drop a reference to this connection).
  co_await asio::co_spawn(get_executor(), impl_->first_connect(), asio::use_awaitable);
}

void connection::close() {
  if (context_gone_.load(std::memory_order_acquire)) return;  // released already: nothing to close
  asio::post(*strand_, [self = shared_from_this()] { self->impl_->shut(); });
}

void connection::submit(request req, exec_handler handler, std::uint64_t id) {
  asio::post(*strand_, [self = shared_from_this(), req = std::move(req), h = std::move(handler), id]() mutable {
    self->impl_->enqueue(std::move(req), std::move(h), id);
  });
}

void connection::abandon(std::uint64_t id) {
  if (context_gone_.load(std::memory_order_acquire)) return;
  asio::post(*strand_, [self = shared_from_this(), id] { self->impl_->mux.cancel(id); });
}

awaitable<response> connection::exec(request req) {
  co_return co_await async_exec(std::move(req), asio::use_awaitable);
}

awaitable<resp::value> connection::call(request req) {
  auto replies = co_await async_exec(req, asio::use_awaitable);
  throw_on_error(req, replies);
  if (replies.empty()) throw system_error(error::unexpected_reply, "empty request");
  co_return std::move(replies.front());
}

void throw_on_error(const request& req, const response& replies) {
  for (std::size_t i = 0; i < replies.size(); ++i)
    if (replies[i].is_error()) throw server_error(req.command_name(i), replies[i].text);
}

}  // namespace sagaflow::transport
