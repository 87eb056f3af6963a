// Package integrations is the contract every integration implements, the
// registry that collects them, and the helpers they share. Integrations are
// plain Go: they never import protoactor or Pebble; the actors package runs
// them and the sessions package carries their records and tokens.
package integrations
