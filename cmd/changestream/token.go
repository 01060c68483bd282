package main

import (
	"fmt"
	"io"
)

func token(args []string, stdout, stderr io.Writer) int {
	_ = stdout
	fmt.Fprintln(stderr, "changestream: token is not implemented yet")
	return exitFailure
}
