// Every test file sees the test-support module (child processes, watchdog, seeded RNG).
@_exported import TricolorTestSupport
