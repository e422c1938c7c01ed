package ferry

import "fmt"

// OptionError is a refusal that an option of Config lifts: Initialize refuses, before writing
// anything, what it cannot do exactly, naming the objects and the option that accepts a stated
// behaviour instead. A command-line tool names its own flag for the option with Message.
type OptionError struct {
	// What is refused and why, naming the objects.
	What string
	// Option is the Config field that lifts the refusal, e.g. "CreateTargetTables".
	Option string
	// Effect says what setting the option means, e.g. "to create it from the source's definition".
	Effect string
}

func (e *OptionError) Error() string { return e.Message(e.Option) }

// Message formats the refusal naming the option as name (a flag, for a command-line tool).
func (e *OptionError) Message(name string) string {
	return fmt.Sprintf("%s; set %s %s", e.What, name, e.Effect)
}
