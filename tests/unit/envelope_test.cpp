// Unit tests of the task envelope's encodings: the packed form (one stream entry field, one
// delayed-set member) round trips every field and keeps what a newer writer appended; the named
// fields of the format before it are still read; each kind of malformed input is refused with
// a message that says what is wrong (the worker dead-letters such entries with that text).
#include <sagaflow/tasks/task.hpp>

#include <gtest/gtest.h>

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace tasks = sagaflow::tasks;
using fields = std::vector<std::pair<std::string, std::string>>;

// Every byte value, so that no byte is special to the format.
std::string all_bytes() {
  std::string s;
  for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
  return s;
}

tasks::envelope full_task() {
  tasks::envelope e;
  e.id = "01JBZ6W4M8Q3T5V7X9Y1A2B3C4";
  e.name = std::string("resize image\0 1:x", 17);
  e.queue = "media";
  e.priority = tasks::priority::low;
  e.payload = tasks::payload::bytes(all_bytes());
  e.attempt = 3;
  e.retry.max_attempts = 7;
  e.retry.backoff = {.base = 250ms, .multiplier = 1.7, .cap = 90s, .jitter = sagaflow::jitter::decorrelated};
  e.timeout = 45s;
  e.previous_delay = 1234ms;
  e.correlation_id = "order 42: \xff\xfe";
  e.enqueued_ms = 1730000000123;
  e.last_error = "disk full\nat line 3 : sf2 9:";
  e.unknown_since_ms = 1730000000999;
  e.headers = {{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
               {std::string("bin\0key", 7), std::string("\0\1 2:", 5)},
               {"empty", ""}};
  return e;
}

void expect_same(const tasks::envelope& a, const tasks::envelope& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.queue, b.queue);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.payload.kind, b.payload.kind);
  EXPECT_EQ(a.payload.data, b.payload.data);
  EXPECT_EQ(a.attempt, b.attempt);
  EXPECT_EQ(a.retry.max_attempts, b.retry.max_attempts);
  EXPECT_EQ(a.retry.backoff.base, b.retry.backoff.base);
  EXPECT_EQ(a.retry.backoff.multiplier, b.retry.backoff.multiplier);
  EXPECT_EQ(a.retry.backoff.cap, b.retry.backoff.cap);
  EXPECT_EQ(a.retry.backoff.jitter, b.retry.backoff.jitter);
  EXPECT_EQ(a.timeout, b.timeout);
  EXPECT_EQ(a.previous_delay, b.previous_delay);
  EXPECT_EQ(a.correlation_id, b.correlation_id);
  EXPECT_EQ(a.enqueued_ms, b.enqueued_ms);
  EXPECT_EQ(a.last_error, b.last_error);
  EXPECT_EQ(a.unknown_since_ms, b.unknown_since_ms);
  EXPECT_EQ(a.headers, b.headers);
  EXPECT_EQ(a.unknown_items, b.unknown_items);
}

// A packed envelope written item by item, to build inputs the encoder would never produce.
std::string packed(std::initializer_list<std::string_view> items, std::string_view tag = "sf2") {
  std::string out(tag);
  for (auto item : items) out += " " + std::to_string(item.size()) + ":" + std::string(item);
  return out;
}

// The 16 known items of a small valid task, to be altered one at a time.
std::vector<std::string> valid_items() {
  return {"id-1", "work", "default", "2", "json", "1", "5", "1000,2,600000,full", "1800000", "0", "id-1",
          "1730000000000", "0", "", "", "{}"};
}

std::string packed(const std::vector<std::string>& items) {
  std::string out = "sf2";
  for (auto& item : items) out += " " + std::to_string(item.size()) + ":" + item;
  return out;
}

// The message of the std::invalid_argument that decoding `text` throws ("" if it does not throw).
std::string refusal(std::string_view text) {
  try {
    (void)tasks::envelope::decode(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(envelope, every_field_round_trips_through_the_packed_form_with_any_bytes) {
  auto task = full_task();
  auto text = task.encode();
  expect_same(tasks::envelope::decode(text), task);
  // The same through the stream entry fields and the delayed-set member.
  auto flat = task.to_fields();
  ASSERT_EQ(flat.size(), 2u);
  EXPECT_EQ(flat[0], tasks::entry_field);
  EXPECT_EQ(flat[1], text);
  expect_same(tasks::envelope::from_fields({{flat[0], flat[1]}}), task);
  auto member = task.to_delayed_member();
  EXPECT_EQ(member, "3" + text) << "the priority digit, then the packed envelope";
  expect_same(tasks::envelope::decode(std::string_view(member).substr(1)), task);
  // Payload encoding json, every priority.
  task.payload = tasks::payload(boost::json::value{{"to", "a@b.c"}});
  for (auto p : {tasks::priority::critical, tasks::priority::high, tasks::priority::normal, tasks::priority::low}) {
    task.priority = p;
    expect_same(tasks::envelope::decode(task.encode()), task);
    EXPECT_EQ(task.to_delayed_member()[0], '0' + static_cast<int>(p));
  }
}

TEST(envelope, empty_strings_and_no_headers_round_trip) {
  tasks::envelope task;
  task.payload = tasks::payload::bytes("");
  auto text = task.encode();
  expect_same(tasks::envelope::decode(text), task);
  EXPECT_EQ(text, "sf2 0: 0: 0: 1:2 5:bytes 1:1 1:5 18:1000,2,600000,full 7:1800000 1:0 0: 1:0 1:0 0: 0: 0:");
}

// The format is an interface between versions: pin it.
TEST(envelope, the_packed_form_is_the_documented_text) {
  tasks::envelope task;
  task.id = "01JBZ6W4M8Q3T5V7X9Y1A2B3C4";
  task.name = "send-email";
  task.queue = "default";
  task.payload = tasks::payload(boost::json::value{{"to", "a@b.c"}});
  task.correlation_id = task.id;
  task.enqueued_ms = 1730000000000;
  task.retry.backoff.multiplier = 1.5;
  task.headers = {{"tenant", "acme"}, {"tp", "00-ab-cd-01"}};
  EXPECT_EQ(task.encode(),
            "sf2 26:01JBZ6W4M8Q3T5V7X9Y1A2B3C4 10:send-email 7:default 1:2 4:json 1:1 1:5 20:1000,1.5,600000,full "
            "7:1800000 1:0 26:01JBZ6W4M8Q3T5V7X9Y1A2B3C4 13:1730000000000 1:0 0: 35:6:tenant 4:acme 2:tp 11:00-ab-cd-01 "
            "14:{\"to\":\"a@b.c\"}");
}

// A newer writer appends items after the payload: this version keeps them as they are and
// writes them back, also after changing the fields it knows.
TEST(envelope, items_appended_by_a_newer_writer_are_kept_verbatim) {
  auto task = full_task();
  auto text = task.encode() + std::string(" 5:new\0x", 8) + " 0: 3:a b";
  auto decoded = tasks::envelope::decode(text);
  EXPECT_EQ(decoded.unknown_items, std::string(" 5:new\0x", 8) + " 0: 3:a b");
  EXPECT_EQ(decoded.encode(), text);
  decoded.attempt += 1;
  decoded.last_error = "again";
  auto rewritten = decoded.encode();
  EXPECT_TRUE(rewritten.ends_with(std::string(" 5:new\0x", 8) + " 0: 3:a b")) << rewritten;
  auto again = tasks::envelope::decode(rewritten);
  EXPECT_EQ(again.attempt, task.attempt + 1);
  EXPECT_EQ(again.last_error, "again");
  EXPECT_EQ(again.unknown_items, decoded.unknown_items);
  // An appended item must still be an item.
  EXPECT_NE(refusal(task.encode() + " 9:short").find("truncated: item '#17 (appended)' needs 9 bytes"),
            std::string::npos)
      << refusal(task.encode() + " 9:short");
  EXPECT_NE(refusal(task.encode() + "junk").find("expected a space before item '#17 (appended)'"), std::string::npos)
      << refusal(task.encode() + "junk");
}

// Delayed members of one task never collide across attempts (a ZADD of an equal member would
// merge two waiting copies into one).
TEST(envelope, delayed_members_differ_per_attempt) {
  auto task = full_task();
  auto first = task.to_delayed_member();
  task.attempt += 1;
  EXPECT_NE(task.to_delayed_member(), first);
  auto other = full_task();
  other.id = "01JBZ6W4M8Q3T5V7X9Y1A2B3C5";
  EXPECT_NE(other.to_delayed_member(), first);
}

// Entries written before the packed format (named fields) are still read.
TEST(envelope, the_named_fields_of_the_previous_format_decode) {
  fields legacy{{"id", "old-1"},           {"name", "work"},
                {"queue", "default"},      {"priority", "1"},
                {"enc", "bytes"},          {"payload", std::string("\0raw", 4)},
                {"attempt", "2"},          {"max_attempts", "4"},
                {"backoff", "500,2.000000,60000,equal"},
                {"timeout_ms", "30000"},   {"corr", "c-9"},
                {"enqueued_ms", "1700000000000"},
                {"prev_delay_ms", "750"},  {"last_error", "boom"},
                {"unknown_since_ms", "17"}, {"h.traceparent", "00-aa-bb-01"},
                {"dead.reason", "max attempts"}};
  auto e = tasks::envelope::from_fields(legacy);
  EXPECT_EQ(e.id, "old-1");
  EXPECT_EQ(e.name, "work");
  EXPECT_EQ(e.queue, "default");
  EXPECT_EQ(e.priority, tasks::priority::high);
  EXPECT_EQ(e.payload.kind, tasks::payload::encoding::bytes);
  EXPECT_EQ(e.payload.data, std::string("\0raw", 4));
  EXPECT_EQ(e.attempt, 2u);
  EXPECT_EQ(e.retry.max_attempts, 4u);
  EXPECT_EQ(e.retry.backoff.base, 500ms);
  EXPECT_EQ(e.retry.backoff.multiplier, 2.0);
  EXPECT_EQ(e.retry.backoff.cap, 60s);
  EXPECT_EQ(e.retry.backoff.jitter, sagaflow::jitter::equal);
  EXPECT_EQ(e.timeout, 30s);
  EXPECT_EQ(e.correlation_id, "c-9");
  EXPECT_EQ(e.enqueued_ms, 1700000000000);
  EXPECT_EQ(e.previous_delay, 750ms);
  EXPECT_EQ(e.last_error, "boom");
  EXPECT_EQ(e.unknown_since_ms, 17);
  EXPECT_EQ(e.headers, (std::map<std::string, std::string>{{"traceparent", "00-aa-bb-01"}}));
  // Re-encoding writes the packed form, which reads back the same.
  expect_same(tasks::envelope::decode(e.encode()), e);
  // The previous format's own errors are unchanged (dead letters and tests name them).
  try {
    (void)tasks::envelope::from_fields({{"garbage", "x"}});
    ADD_FAILURE() << "an entry without a task decoded";
  } catch (const std::invalid_argument& error) {
    EXPECT_STREQ(error.what(), "task entry lacks the field 'id'");
  }
}

// A dead letter is the `task` field and dead.* fields next to it: the task field decides.
TEST(envelope, an_entry_with_a_task_field_is_the_packed_form) {
  auto task = full_task();
  fields dead{{"task", task.encode()}, {"dead.reason", "max attempts"}, {"dead.attempts", "3"}, {"id", "not-this"}};
  expect_same(tasks::envelope::from_fields(dead), task);
  // A task field that is not a packed envelope is refused, not read as named fields.
  try {
    (void)tasks::envelope::from_fields({{"task", "{}"}, {"id", "x"}, {"name", "y"}, {"payload", "z"}});
    ADD_FAILURE() << "a bad task field decoded";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("version tag"), std::string::npos) << error.what();
  }
}

TEST(envelope, a_valid_hand_written_envelope_decodes) {
  auto e = tasks::envelope::decode(packed(valid_items()));
  EXPECT_EQ(e.id, "id-1");
  EXPECT_EQ(e.retry.backoff.multiplier, 2.0);
  EXPECT_TRUE(e.headers.empty());
  EXPECT_TRUE(e.unknown_items.empty());
}

TEST(envelope, every_truncation_is_refused_as_truncated) {
  auto text = full_task().encode();
  for (std::size_t n = 0; n < text.size(); ++n) {
    auto why = refusal(std::string_view(text).substr(0, n));
    ASSERT_FALSE(why.empty()) << "a prefix of " << n << " bytes decoded";
    if (n >= 3) {
      ASSERT_NE(why.find("truncated"), std::string::npos) << n << " bytes: " << why;
    } else {
      ASSERT_NE(why.find("version tag"), std::string::npos) << n << " bytes: " << why;
    }
  }
  EXPECT_EQ(refusal(packed({"id-1", "work"})), "packed task envelope: truncated: item 'queue' is missing");
  EXPECT_EQ(refusal("sf2 4:id-1 12"), "packed task envelope: truncated: item 'name' ends in its length");
  EXPECT_EQ(refusal("sf2 40:id-1"), "packed task envelope: truncated: item 'id' needs 40 bytes, 4 are left");
}

TEST(envelope, a_bad_length_is_refused) {
  EXPECT_EQ(refusal("sf2 4x:id-1"), "packed task envelope: item 'id' has a bad length '4x'");
  EXPECT_EQ(refusal("sf2 04:id-1"), "packed task envelope: item 'id' has a bad length '04'") << "no leading zeros";
  EXPECT_EQ(refusal("sf2 -4:id-1"), "packed task envelope: item 'id' has a bad length '-4'");
  EXPECT_EQ(refusal("sf2 :id-1"), "packed task envelope: item 'id' has a bad length ''");
  EXPECT_EQ(refusal("sf2 12345678901:x"), "packed task envelope: item 'id' has a bad length '12345678901'");
  EXPECT_EQ(refusal("sf2 4 id-1 4:work"), "packed task envelope: item 'id' has a bad length '4 id-1 4'");
  EXPECT_EQ(refusal("sf2  4:id-1"), "packed task envelope: item 'id' has a bad length ' 4'");
  EXPECT_EQ(refusal("sf24:id-1"), "packed task envelope: expected a space before item 'id' at byte 3, found '4'");
  auto items = valid_items();
  auto text = packed(items);
  // Two spaces between items: the second is where a length should start.
  auto doubled = text;
  doubled.insert(doubled.find(" 4:work"), " ");
  EXPECT_EQ(refusal(doubled), "packed task envelope: item 'name' has a bad length ' 4'");
}

TEST(envelope, a_bad_number_is_refused_with_the_item_named) {
  struct bad_case {
    std::size_t item;
    std::string value;
    std::string message;
  };
  const bad_case cases[] = {
      {5, "one", "item 'attempt' is not a number: 'one'"},
      {5, "-1", "item 'attempt' is not a number: '-1'"},
      {5, "4294967296", "item 'attempt' is not a number: '4294967296'"},
      {5, "1 ", "item 'attempt' is not a number: '1 '"},
      {5, "", "item 'attempt' is not a number: ''"},
      {6, "+5", "item 'max_attempts' is not a number: '+5'"},
      {7, "1000,two,600000,full", "item 'backoff' is not a number: 'two'"},
      {7, "1000,2,600000", "item 'backoff' is not base_ms,multiplier,cap_ms,jitter: '1000,2,600000'"},
      {7, "1000,2,600000,full,x", "item 'backoff' is not base_ms,multiplier,cap_ms,jitter: '1000,2,600000,full,x'"},
      {7, "1000,0.5,600000,full", "item 'backoff': backoff_policy.multiplier must be a finite number >= 1"},
      {7, "1000,inf,600000,full", "item 'backoff': backoff_policy.multiplier must be a finite number >= 1"},
      {7, "1000,2,600000,sometimes", "item 'backoff': "},
      {8, "30s", "item 'timeout_ms' is not a number: '30s'"},
      {9, "0x10", "item 'prev_delay_ms' is not a number: '0x10'"},
      {11, "99999999999999999999", "item 'enqueued_ms' is not a number: '99999999999999999999'"},
      {12, "\xff", "item 'unknown_since_ms' is not a number: '\\xff'"},
  };
  for (auto& c : cases) {
    auto items = valid_items();
    items[c.item] = c.value;
    auto why = refusal(packed(items));
    EXPECT_EQ(why.rfind("packed task envelope: " + c.message, 0), 0u) << "got: " << why << "\nwanted: " << c.message;
  }
}

TEST(envelope, a_priority_out_of_range_is_refused) {
  for (std::string p : {"4", "9", "-1", "02", "", "x"}) {
    auto items = valid_items();
    items[3] = p;
    EXPECT_EQ(refusal(packed(items)), "packed task envelope: item 'priority' must be 0..3, not '" + p + "'");
  }
}

TEST(envelope, attempt_counts_of_zero_are_refused) {
  auto items = valid_items();
  items[5] = "0";
  EXPECT_EQ(refusal(packed(items)), "packed task envelope: item 'attempt' must be >= 1");
  items = valid_items();
  items[6] = "0";
  EXPECT_EQ(refusal(packed(items)), "packed task envelope: item 'max_attempts' must be >= 1");
}

TEST(envelope, a_missing_version_tag_is_refused) {
  auto items = valid_items();
  for (std::string_view tag : {"", "sf1", "SF2", "xsf2"}) {
    std::string text;
    for (auto& item : items) text += " " + std::to_string(item.size()) + ":" + item;
    text = std::string(tag) + text;
    auto why = refusal(text);
    EXPECT_EQ(why.rfind("packed task envelope: does not start with the version tag 'sf2': '", 0), 0u) << why;
  }
  EXPECT_EQ(refusal(""), "packed task envelope: does not start with the version tag 'sf2': ''");
  EXPECT_EQ(refusal("\x01{\"p\":2}"), "packed task envelope: does not start with the version tag 'sf2': '\\x01{\"p\":2}'");
}

TEST(envelope, bad_enc_and_headers_are_refused) {
  auto items = valid_items();
  items[4] = "xml";
  EXPECT_EQ(refusal(packed(items)), "packed task envelope: item 'enc' must be json or bytes, not 'xml'");
  items = valid_items();
  items[14] = "2:tp";
  EXPECT_EQ(refusal(packed(items)), "packed task envelope: truncated: item 'header value' is missing");
  items[14] = "2:tp 3:abcd";
  auto why = refusal(packed(items));
  auto at = packed(items).find("2:tp 3:abcd") + 10;
  EXPECT_EQ(why, "packed task envelope: expected a space before item 'header name' at byte " + std::to_string(at) +
                     ", found 'd'");
  items[14] = "2:tp 3:abc";
  EXPECT_EQ(tasks::envelope::decode(packed(items)).headers, (std::map<std::string, std::string>{{"tp", "abc"}}));
}
