// Package service runs courier under systemd: it renders and installs the
// unit (courier.service) and speaks the sd_notify protocol (readiness,
// stopping, watchdog) for service-run.
//
// Everything that touches the system goes through a Manager whose paths,
// user id and command runner are fields, so tests never touch the real
// system. Where the unit cannot be managed (not root, systemd not running)
// the error is an *UnavailableError that says exactly what to run instead.
package service
