-- Runs busted inside sbot's interpreter, so specs can require sbot's C modules.
-- Usage: sbot run tests/busted.lua [busted options] SPEC...
-- Specs can require "helpers" (tests/support/helpers.lua) and other support files.
local src = os.getenv("SBOT_SOURCE_DIR") or "."
package.path = src .. "/tests/support/?.lua;" .. package.path
require "busted.runner" ({ standalone = false })
