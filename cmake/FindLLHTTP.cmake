# Finds llhttp. A system library (libllhttp-dev) wins when present; otherwise
# the C sources that Debian's node-llhttp package ships are compiled in, since
# that package installs sources, not a library.
#
# Defines the target llhttp::llhttp.

find_path(LLHTTP_INCLUDE_DIR llhttp.h
  PATHS /usr/include /usr/local/include /usr/share/include/llhttp
  PATH_SUFFIXES llhttp)
find_library(LLHTTP_LIBRARY NAMES llhttp)

if(LLHTTP_LIBRARY AND LLHTTP_INCLUDE_DIR)
  add_library(llhttp::llhttp UNKNOWN IMPORTED)
  set_target_properties(llhttp::llhttp PROPERTIES
    IMPORTED_LOCATION "${LLHTTP_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LLHTTP_INCLUDE_DIR}")
  set(LLHTTP_FOUND TRUE)
  message(STATUS "llhttp: system library ${LLHTTP_LIBRARY}")
else()
  find_path(LLHTTP_SOURCE_DIR llhttp.c api.c http.c
    PATHS /usr/share/llhttp NO_DEFAULT_PATH)
  find_path(LLHTTP_SOURCE_INCLUDE_DIR llhttp.h
    PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
  if(LLHTTP_SOURCE_DIR AND LLHTTP_SOURCE_INCLUDE_DIR)
    add_library(llhttp_sources STATIC
      ${LLHTTP_SOURCE_DIR}/llhttp.c
      ${LLHTTP_SOURCE_DIR}/api.c
      ${LLHTTP_SOURCE_DIR}/http.c)
    target_include_directories(llhttp_sources SYSTEM PUBLIC
      ${LLHTTP_SOURCE_INCLUDE_DIR})
    set_target_properties(llhttp_sources PROPERTIES
      POSITION_INDEPENDENT_CODE ON C_STANDARD 11)
    # Generated code: not ours to hold to our warning flags.
    target_compile_options(llhttp_sources PRIVATE -w)
    add_library(llhttp::llhttp ALIAS llhttp_sources)
    set(LLHTTP_FOUND TRUE)
    message(STATUS "llhttp: compiling sources from ${LLHTTP_SOURCE_DIR}")
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LLHTTP REQUIRED_VARS LLHTTP_FOUND)
