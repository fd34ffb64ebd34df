// What every test script shares: one JSON verdict line on standard output (the Rust side
// reads the last line), a deadline, and waiting for one event.

// Prints `result` as the verdict and exits 0.
export function done(result) {
  console.log(JSON.stringify(result));
  process.exit(0);
}

// Prints a failed verdict with `message` and exits 1.
export function fail(message) {
  console.log(JSON.stringify({ ok: false, error: message }));
  process.exit(1);
}

// Fails the script if it is still running after `ms` (it names `scenario`).
export function deadline(scenario, ms) {
  setTimeout(() => fail(`timed out in ${scenario}`), ms).unref();
}

// The arguments of `socket`'s next `event`.
export function next(socket, event) {
  return new Promise((resolve) => socket.once(event, (...a) => resolve(a)));
}
