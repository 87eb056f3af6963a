// Package logging sets up zerolog for every courier command: human-readable
// output on a terminal, JSON lines otherwise, and a copy of each command's
// last run under the root folder (logs/<command>) that survives the terminal
// and can be shipped to the backend.
//
// It also routes log/slog, which protoactor-go logs through, into the same
// logger, and fixes the field keys each layer uses. zerolog does not
// de-duplicate fields, so two layers writing "component" would produce a line
// with the key twice; giving each layer its own key (FieldComponent,
// FieldIntegration, FieldSession, FieldCommand, FieldRoutingKey) avoids that.
package logging
