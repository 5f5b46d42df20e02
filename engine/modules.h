/* Every sbot C module, listed once: SBOT_MODULE(lua name, luaopen function).
 * runtime.c turns this list into package.preload entries, so
 * require "sbot.<name>" finds each module without touching the file system. */
SBOT_MODULE("cjson", luaopen_cjson)
SBOT_MODULE("sbot.log", luaopen_sbot_log)
SBOT_MODULE("sbot.http", luaopen_sbot_http)
SBOT_MODULE("sbot.crypto", luaopen_sbot_crypto)
SBOT_MODULE("sbot.sigv4", luaopen_sbot_sigv4)
SBOT_MODULE("sbot.s3xml", luaopen_sbot_s3xml)
SBOT_MODULE("sbot.fsio", luaopen_sbot_fsio)
