/* Every sbot C module, listed once: SBOT_MODULE(lua name, luaopen function).
 * runtime.c turns this list into package.preload entries, so
 * require "sbot.<name>" finds each module without touching the file system. */
SBOT_MODULE("cjson", luaopen_cjson)
SBOT_MODULE("sbot.log", luaopen_sbot_log)
SBOT_MODULE("sbot.sys", luaopen_sbot_sys)
SBOT_MODULE("sbot.lock", luaopen_sbot_lock)
SBOT_MODULE("sbot.component", luaopen_sbot_component)
SBOT_MODULE("sbot.fleet", luaopen_sbot_fleet)
