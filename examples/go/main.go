// Command imageexport-go runs a Go Pulumi program with one ImageExport (the
// export-image provider plugin, through its generated Go SDK) as an Automation
// API inline program: the Go language host is not needed, only the `pulumi`
// CLI and the plugin `pulumi-resource-export-image` on PATH.
//
//	imageexport-go -op up -stack dev -config imageId=ami-0123456789abcdef0 \
//	    -config bucket=my-exports -config export-image:region=us-east-1
//
// The state backend and the passphrase come from the environment as for the
// CLI (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE). Ctrl-C (SIGINT) is
// passed on to the running operation: the first cancels the export, a second
// terminates. The last line on stdout is a JSON summary of the operation.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optpreview"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optrefresh"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
)

// pairs collects repeated -config/-secret KEY=VALUE flags.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(s string) error {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	p[key] = value
	return nil
}

type options struct {
	op, stack, project, workdir, importID string
	config, secrets                       pairs
}

func parseFlags() options {
	o := options{config: pairs{}, secrets: pairs{}}
	cache, _ := os.UserCacheDir()
	flag.StringVar(&o.op, "op", "up", "up, preview, refresh, destroy or import")
	flag.StringVar(&o.stack, "stack", "dev", "the stack's name")
	flag.StringVar(&o.project, "project", "export-image-go", "the project's name")
	flag.StringVar(&o.workdir, "workdir", filepath.Join(cache, "export-image-go"),
		"where Pulumi.yaml and Pulumi.<stack>.yaml (config, secrets salt) are kept between runs;"+
			" a Pulumi.yaml already there names the project instead of -project")
	flag.StringVar(&o.importID, "id", "", "with -op import: the export task started outside Pulumi to adopt (export-ami-...)")
	flag.Var(o.config, "config", "stack config KEY=VALUE (repeatable), e.g. imageId=ami-..., export-image:region=us-east-1")
	flag.Var(o.secrets, "secret", "secret stack config KEY=VALUE (repeatable), e.g. export-image:secretKey=...")
	flag.Parse()
	if flag.NArg() != 0 || !slices.Contains([]string{"up", "preview", "refresh", "destroy", "import"}, o.op) {
		flag.Usage()
		os.Exit(2)
	}
	return o
}

func main() {
	o := parseFlags()
	summary, err := run(o)
	if summary != nil {
		line, _ := json.Marshal(summary)
		fmt.Println(string(line))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "imageexport-go: %s failed: %v\n", o.op, err)
		os.Exit(1)
	}
}

func run(o options) (map[string]any, error) {
	cli, err := newCLICommand()
	if err != nil {
		return nil, err
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		for sig := range signals {
			n := cli.forward(sig)
			fmt.Fprintf(os.Stderr, "imageexport-go: %v passed on to %d pulumi command(s)\n", sig, n)
			if n == 0 { // between commands: nothing to cancel, so stop here
				os.Exit(130)
			}
		}
	}()

	ctx := context.Background()
	if err := os.MkdirAll(o.workdir, 0o755); err != nil {
		return nil, err
	}
	importID := ""
	if o.op == "import" {
		if o.importID == "" {
			return nil, errors.New("-op import needs -id export-ami-...")
		}
		importID = o.importID
	}
	stack, err := auto.UpsertStackInlineSource(ctx, o.stack, o.project, program(importID),
		auto.Pulumi(cli), auto.WorkDir(o.workdir))
	if err != nil {
		return nil, err
	}
	if err := setConfig(ctx, stack, o); err != nil {
		return nil, err
	}
	return operate(ctx, stack, o)
}

func setConfig(ctx context.Context, stack auto.Stack, o options) error {
	all := auto.ConfigMap{}
	for k, v := range o.config {
		all[k] = auto.ConfigValue{Value: v}
	}
	for k, v := range o.secrets {
		all[k] = auto.ConfigValue{Value: v, Secret: true}
	}
	if len(all) == 0 {
		return nil
	}
	return stack.SetAllConfig(ctx, all)
}

// operate runs the operation; its summary holds the engine's change counts
// (resource op -> count) and, after up, refresh and import, the stack outputs.
func operate(ctx context.Context, stack auto.Stack, o options) (map[string]any, error) {
	progress := os.Stderr
	summary := map[string]any{"op": o.op, "stack": o.stack}
	switch o.op {
	case "up", "import":
		// import: an up whose program adopts the task (see program).
		res, err := stack.Up(ctx, optup.ProgressStreams(progress))
		summary["changes"] = res.Summary.ResourceChanges
		summary["outputs"] = plain(res.Outputs)
		return summary, err
	case "preview":
		res, err := stack.Preview(ctx, optpreview.ProgressStreams(progress))
		summary["changes"] = res.ChangeSummary
		return summary, err
	case "refresh":
		res, err := stack.Refresh(ctx, optrefresh.ProgressStreams(progress))
		summary["changes"] = res.Summary.ResourceChanges
		return summary, err
	case "destroy":
		res, err := stack.Destroy(ctx, optdestroy.ProgressStreams(progress))
		summary["changes"] = res.Summary.ResourceChanges
		return summary, err
	}
	return nil, fmt.Errorf("unknown -op %q", o.op)
}

// plain drops the secret markers of stack outputs, for the JSON summary.
func plain(outputs auto.OutputMap) map[string]any {
	values := map[string]any{}
	for k, v := range outputs {
		if v.Secret {
			values[k] = "[secret]"
		} else {
			values[k] = v.Value
		}
	}
	return values
}
