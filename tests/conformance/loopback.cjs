// Preloaded into the conformance suite's reference server (tests/conformance.rs):
// a server that listens on a bare port listens on 127.0.0.1 only, since the
// tests use loopback addresses only and the server as written binds every interface.
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const bare = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  if (bare && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
