/* On the engine's include path only: libshadow is pure (no I/O, no Lua,
 * no HTTP parser), so including luajit.h from src/engine/ is an error. */
#error                                                                         \
    "src/engine may not include luajit.h: the engine is pure (see src/engine/)"
