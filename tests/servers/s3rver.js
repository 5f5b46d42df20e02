// Start @20minutes/s3rver (installed by tests/setup-npm into tests/.deps) with
// the command-line arguments given, e.g.:
//   NODE_OPTIONS=--openssl-legacy-provider node tests/servers/s3rver.js -d DIR -a 127.0.0.1 -p PORT -s
// The package ships its CLI as a module without the bin script, so this is it.
const path = require('path')
const cli = require(path.join(__dirname, '..', '.deps', 'node_modules', '@20minutes', 's3rver', 'lib', 'cli.js'))
cli.parseAsync(process.argv).catch((err) => {
  console.error(err && err.stack ? err.stack : String(err))
  process.exit(1)
})
