// Command strata is the Strata broker and its admin tools.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Strata: a Kafka-protocol log service with tiered storage",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd())
	root.AddCommand(tierCmd())
	root.AddCommand(retentionCmd())
	root.AddCommand(groupsCmd())
	root.AddCommand(txnCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		os.Exit(1)
	}
}
