// Package cli is courier's command line: one file per command, exit codes
// decided in one place (errors.go). main calls Run and nothing else, and the
// tests call the same Run with buffers.
package cli
