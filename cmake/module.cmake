# sagaflow_module(<name> SOURCES ... DEPS ...): one static library per module, exported as
# sagaflow::<name>, headers installed as <sagaflow/<name>/...>.
function(sagaflow_module name)
  cmake_parse_arguments(M "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;PCH" ${ARGN})
  add_library(sagaflow_${name} STATIC ${M_SOURCES})
  add_library(sagaflow::${name} ALIAS sagaflow_${name})
  set_target_properties(sagaflow_${name} PROPERTIES EXPORT_NAME ${name} OUTPUT_NAME sagaflow_${name}
                        POSITION_INDEPENDENT_CODE ON)
  target_include_directories(sagaflow_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_link_libraries(sagaflow_${name} PUBLIC ${M_PUBLIC_DEPS} PRIVATE ${M_PRIVATE_DEPS}
                        $<BUILD_INTERFACE:sagaflow_warnings>)
  target_compile_features(sagaflow_${name} PUBLIC cxx_std_20)
  if(M_PCH)
    target_precompile_headers(sagaflow_${name} PRIVATE ${M_PCH})
  endif()
  install(TARGETS sagaflow_${name} EXPORT sagaflow-targets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
endfunction()

# Embeds the Lua scripts `lua/<name>.lua` of the calling module as functions
# `const transport::script& <name>()` in namespace `ns` (declared in src/scripts.hpp), in the
# generated source `out`; editing a script reconfigures.
function(sagaflow_embed_lua ns out)
  set(embedded "// Generated from lua/*.lua by sagaflow_embed_lua (cmake/module.cmake): do not edit.\n#include \"scripts.hpp\"\n\nnamespace ${ns} {\n")
  foreach(name IN LISTS ARGN)
    set(file ${CMAKE_CURRENT_SOURCE_DIR}/lua/${name}.lua)
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
    file(READ ${file} source)
    string(APPEND embedded "const transport::script& ${name}() {\n  static const transport::script s(R\"sagaflow_lua(${source})sagaflow_lua\");\n  return s;\n}\n")
  endforeach()
  string(APPEND embedded "}  // namespace ${ns}\n")
  file(CONFIGURE OUTPUT ${out} CONTENT "${embedded}" @ONLY)
endfunction()
