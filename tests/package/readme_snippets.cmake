# readme_snippets: every ```cpp block of README.md, compiled and linked against the installed
# package, so that the README cannot drift from the code. A block whose first line is an
# #include is the prelude the README states (file scope, shared by every snippet); each other
# block is the body of a coroutine in which the README's `rt` (a sagaflow::runtime), `conn`
# (a connection) and `stop` (a stop_source) exist. One translation unit per snippet, with #line
# so that an error names the README's line.
file(READ ${SAGAFLOW_README} text)
set(dir ${CMAKE_CURRENT_BINARY_DIR}/readme)
file(REMOVE_RECURSE ${dir})
set(prelude "")
set(sources "")
set(line 1)  # of the start of `text` in the README
set(count 0)

function(count_lines text out)
  string(REGEX MATCHALL "\n" newlines "${text}")
  list(LENGTH newlines n)
  set(${out} ${n} PARENT_SCOPE)
endfunction()

while(TRUE)
  string(FIND "${text}" "```cpp\n" open)
  if(open EQUAL -1)
    break()
  endif()
  math(EXPR open "${open} + 7")
  string(SUBSTRING "${text}" 0 ${open} head)
  string(SUBSTRING "${text}" ${open} -1 text)
  count_lines("${head}" n)
  math(EXPR line "${line} + ${n}")
  string(FIND "${text}" "\n```" close)
  if(close EQUAL -1)
    message(FATAL_ERROR "${SAGAFLOW_README}:${line}: this ```cpp block is not closed")
  endif()
  math(EXPR close "${close} + 1")
  string(SUBSTRING "${text}" 0 ${close} body)
  string(SUBSTRING "${text}" ${close} -1 text)
  set(located "#line ${line} \"${SAGAFLOW_README}\"\n${body}")
  if(body MATCHES "^#include")
    string(APPEND prelude "${located}")
  else()
    math(EXPR count "${count} + 1")
    file(WRITE ${dir}/snippet_${count}.cpp
      "// Generated from README.md by tests/package/readme_snippets.cmake: do not edit.\n"
      "${prelude}"
      "#line 1 \"readme_snippet_${count}.cpp\"\n"
      "sagaflow::awaitable<void> readme_snippet_${count}(sagaflow::runtime& rt,\n"
      "    std::shared_ptr<sagaflow::transport::connection> conn, sagaflow::stop_source stop) {\n"
      "  (void)rt;\n  (void)conn;\n  (void)stop;\n  {\n"
      "${located}"
      # GCC reports some coroutine errors at the closing brace: name the snippet there too.
      "#line 1 \"${SAGAFLOW_README}: the end of the snippet at line ${line}\"\n"
      "  }\n  co_return;\n}\n")
    list(APPEND sources ${dir}/snippet_${count}.cpp)
  endif()
  count_lines("${body}" n)
  math(EXPR line "${line} + ${n}")
endwhile()

if(count EQUAL 0)
  message(FATAL_ERROR "${SAGAFLOW_README}: no ```cpp snippet found (has the README's format changed?)")
endif()
message(STATUS "README.md: ${count} snippet(s) to compile")
file(WRITE ${dir}/main.cpp "// The snippets are compiled and linked, not run.\nint main() { return 0; }\n")
add_executable(readme_snippets ${dir}/main.cpp ${sources})
target_link_libraries(readme_snippets PRIVATE sagaflow::sagas)
