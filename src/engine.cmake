# The files of libshadow, the pure engine. They include neither uv.h nor lua.h.
set(SHADOW_ENGINE_SOURCES
  ${CMAKE_SOURCE_DIR}/src/buf.c
  ${CMAKE_SOURCE_DIR}/src/record.c
  ${CMAKE_SOURCE_DIR}/src/sample.c
  ${CMAKE_SOURCE_DIR}/src/ring.c
  ${CMAKE_SOURCE_DIR}/src/json.c
  ${CMAKE_SOURCE_DIR}/src/json_diff.c
  ${CMAKE_SOURCE_DIR}/src/diff.c
  ${CMAKE_SOURCE_DIR}/src/divergence.c
  ${CMAKE_SOURCE_DIR}/src/record_parse.c
  ${CMAKE_SOURCE_DIR}/src/shadow_ffi.c
)
