package ferry

import "fmt"

// OptionError is a refusal that an option of Config lifts: Initialize refuses, before writing
// anything, what it cannot do exactly, naming the objects and the option that accepts a stated
// behaviour instead. A command-line tool names its own flags for the options with Message.
type OptionError struct {
	// What is refused and why, naming the objects.
	What string
	// Option is the Config field that lifts the refusal, e.g. "CreateTargetTables".
	Option string
	// Effect says what setting the option means, e.g. "to create it from the source's definition".
	Effect string
	// Alt and AltEffect name another option that lifts the refusal, and what it means (optional).
	Alt, AltEffect string
}

func (e *OptionError) Error() string { return e.Message(func(option string) string { return option }) }

// Message formats the refusal naming each option as name(option) (a flag, for a command-line tool).
func (e *OptionError) Message(name func(option string) string) string {
	s := fmt.Sprintf("%s; set %s %s", e.What, name(e.Option), e.Effect)
	if e.Alt != "" {
		s += fmt.Sprintf(", or set %s %s", name(e.Alt), e.AltEffect)
	}
	return s
}
