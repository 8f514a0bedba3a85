// Compiles tests/fixtures/evm/TestUSDT.sol into TestUSDT.json (ABI and creation bytecode).
// Run once after changing the source: `npm ci && npm run compile` in tests/evm.
const fs = require('fs')
const path = require('path')
const solc = require('solc')

const dir = path.join(__dirname, '..', 'fixtures', 'evm')
const input = {
  language: 'Solidity',
  sources: { 'TestUSDT.sol': { content: fs.readFileSync(path.join(dir, 'TestUSDT.sol'), 'utf8') } },
  settings: {
    evmVersion: 'paris',
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { TestUSDT: ['abi', 'evm.bytecode.object'] } }
  }
}
const output = JSON.parse(solc.compile(JSON.stringify(input)))
for (const error of output.errors || []) console.error(error.formattedMessage)
if ((output.errors || []).some((error) => error.severity === 'error')) process.exit(1)
const contract = output.contracts['TestUSDT.sol'].TestUSDT
const artifact = { compiler: `solc ${solc.version()}`, abi: contract.abi, bytecode: '0x' + contract.evm.bytecode.object }
fs.writeFileSync(path.join(dir, 'TestUSDT.json'), JSON.stringify(artifact, null, 2) + '\n')
