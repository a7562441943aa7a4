//go:build race

package daemon

// raceEnabled: the race detector slows byte-heavy tests about tenfold; they shrink.
const raceEnabled = true
