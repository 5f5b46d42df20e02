/* Every sbot C module, listed once. runtime.c turns this list into
 * package.preload entries, so require "sbot.<name>" finds each module without
 * touching the file system.
 *   SBOT_CORE_MODULE(name, fn): linked into the sbot binary itself;
 *   SBOT_MODULE(name, fn):      in the extension library libsbot-ext.so,
 *                               opened on the first require of such a module. */
SBOT_CORE_MODULE("cjson", luaopen_cjson)
SBOT_CORE_MODULE("sbot.jsonc", luaopen_sbot_jsonc)
SBOT_CORE_MODULE("sbot.log", luaopen_sbot_log)
SBOT_CORE_MODULE("sbot.progress", luaopen_sbot_progress)
SBOT_MODULE("sbot.sys", luaopen_sbot_sys)
SBOT_MODULE("sbot.lock", luaopen_sbot_lock)
SBOT_MODULE("sbot.lifecycle", luaopen_sbot_lifecycle)
SBOT_MODULE("sbot.component.s3", luaopen_sbot_component_s3)
SBOT_MODULE("sbot.fleet", luaopen_sbot_fleet)
SBOT_MODULE("sbot.http", luaopen_sbot_http)
SBOT_MODULE("sbot.crypto", luaopen_sbot_crypto)
SBOT_MODULE("sbot.httpd", luaopen_sbot_httpd)
SBOT_MODULE("sbot.ws", luaopen_sbot_ws)
SBOT_MODULE("sbot.truenas", luaopen_sbot_truenas)
SBOT_MODULE("sbot.tls", luaopen_sbot_tls)
SBOT_MODULE("sbot.iscsi", luaopen_sbot_iscsi)
SBOT_MODULE("sbot.sigv4", luaopen_sbot_sigv4)
SBOT_MODULE("sbot.s3xml", luaopen_sbot_s3xml)
SBOT_MODULE("sbot.fsio", luaopen_sbot_fsio)
SBOT_MODULE("sbot.keeper", luaopen_sbot_keeper)
SBOT_MODULE("sbot.component.iscsi", luaopen_sbot_component_iscsi)
SBOT_MODULE("sbot.yaml", luaopen_sbot_yaml)
SBOT_MODULE("sbot.component.openshift", luaopen_sbot_component_openshift)
SBOT_MODULE("sbot.component.vault", luaopen_sbot_component_vault)
SBOT_MODULE("sbot.redfish", luaopen_sbot_redfish)
SBOT_MODULE("sbot.component.r630", luaopen_sbot_component_r630)
