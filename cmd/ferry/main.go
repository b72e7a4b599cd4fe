// Command ferry checks, runs and reports on Linux container live migration.
package main

import (
	"os"

	"github.com/ferry-migrate/ferry/cmd"
)

func main() { os.Exit(cmd.Main()) }
