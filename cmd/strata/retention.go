package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// retentionCmd is `strata retention`: dry runs of retention and compaction
// through a running broker's admin API.
func retentionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "retention",
		Short: "Ask a running broker what retention and compaction would do",
	}
	cmd.AddCommand(retentionPlanCmd())
	return cmd
}

type retentionPlanOptions struct {
	admin   string
	sets    []string
	output  string
	timeout time.Duration
}

func retentionPlanCmd() *cobra.Command {
	var o retentionPlanOptions
	cmd := &cobra.Command{
		Use:   "plan <topic>",
		Short: "Print what retention and compaction would delete or rewrite, on each tier",
		Long: `Print, for each partition of a topic, what the broker's next retention
pass would delete and what its log cleaner would compact: on a tiered topic
the remote segment objects that leave the manifest and the local segments
deleted, with their offsets, object keys or file names, bytes and the
setting that decides; the new log start offset; the compaction range with
its clean and dirty parts and the segments rewritten.

Without --set the plan uses the topic's current configs. Each --set
key=value (Kafka topic config names, repeatable) proposes a value on top of
them, validated as AlterConfigs would validate it; nothing is changed.
Apply the configs afterwards with any Kafka admin tool.

The broker answers on its admin API (serve --admin-addr). Like serve, every
flag can also be set with an environment variable (STRATA_ plus the flag
name in upper case with '-' as '_', e.g. STRATA_ADMIN).`,
		Example: `  strata retention plan events --set retention.ms=86400000
  strata retention plan events --set retention.bytes=1073741824 --set local.retention.bytes=104857600
  strata retention plan changes --set cleanup.policy=compact,delete --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applyEnvAndFile(cmd.Flags(), ""); err != nil {
				return err
			}
			parent := cmd.Context()
			if parent == nil {
				parent = context.Background()
			}
			ctx, cancel := context.WithTimeout(parent, o.timeout)
			defer cancel()
			return runRetentionPlan(ctx, cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.admin, "admin", "http://127.0.0.1:9644", "the broker's admin API (serve --admin-addr)")
	f.StringArrayVar(&o.sets, "set", nil, "propose a topic config value, key=value (repeatable)")
	f.StringVar(&o.output, "output", "text", "text, or json (the admin API's answer)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// retentionPlanURL is the admin API URL of a topic's dry run.
func retentionPlanURL(admin, topic string, o retentionPlanOptions) (string, error) {
	if !strings.Contains(admin, "://") {
		admin = "http://" + admin
	}
	base, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("--admin %q: %w", admin, err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return "", fmt.Errorf("--admin %q: want an http:// or https:// address", admin)
	}
	q := url.Values{}
	for _, s := range o.sets {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return "", fmt.Errorf("--set %q: want key=value", s)
		}
		q.Add("set", s)
	}
	if o.output == "text" {
		q.Set("format", "text")
	}
	u := base.JoinPath("v1", "topics", topic, "retention-plan")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func runRetentionPlan(ctx context.Context, out io.Writer, topic string, o retentionPlanOptions) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("--output must be text or json, got %q", o.output)
	}
	u, err := retentionPlanURL(o.admin, topic, o)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask the broker's admin API (is serve running with --admin-addr?): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the admin API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return adminAPIError(resp.StatusCode, body)
	}
	_, err = out.Write(body)
	return err
}

// adminAPIError is the error of a failed admin API call: the message the
// API gave (JSON or text), or the HTTP status.
func adminAPIError(status int, body []byte) error {
	var ae adminError
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &ae) == nil && ae.Error != "" {
		msg = ae.Error
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return errors.New(msg)
}
