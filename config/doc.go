// Package config owns the agent's root folder and its config.yaml: the folder
// layout, the defaults, strict loading and validation, and the atomic writes
// done by `courier init` and `courier enroll`.
//
// A config is validated when it is loaded, never at first use: an unknown key
// or a bad value stops the agent at start-up with an error that names the key,
// the file and the line, instead of surfacing hours later in a code path that
// happens to read it. Every such error matches ErrInvalid, so the CLI can map
// it to exit code 78 and systemd stops restarting a unit that cannot work.
//
// Secrets (API key, local token) are of type Secret, which prints and
// JSON-encodes as "[redacted]" but writes its real value to YAML, so the file
// round-trips while logs and error messages never carry a credential.
package config
