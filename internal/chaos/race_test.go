//go:build race

package chaos

// raceBuild is true when the tests run with -race; the presenced binary under
// test is then built with -race too, so a data race in the service fails the
// scenario that provoked it.
const raceBuild = true
