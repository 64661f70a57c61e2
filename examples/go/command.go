package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
)

// cliCommand runs the `pulumi` CLI for the Automation API, each command in a
// process group of its own, and forwards this program's SIGINT/SIGTERM to it.
//
// Why not the Automation API's own runner: it starts the CLI in this
// program's process group and signals it when the context is cancelled. A
// terminal's Ctrl-C reaches the whole group, so the CLI would receive it twice
// (from the terminal and from the cancelled context), and the CLI takes a
// second SIGINT as "terminate now": the engine would kill the provider instead
// of letting it cancel the export. Here the CLI only hears what this program
// forwards: one Ctrl-C cancels gracefully, a second one terminates, as in a
// terminal running `pulumi up`.
type cliCommand struct {
	path    string
	version semver.Version

	mu      sync.Mutex
	running map[*os.Process]struct{}
}

var _ auto.PulumiCommand = (*cliCommand)(nil)

// newCLICommand finds `pulumi` on PATH; the Automation API checks its version.
func newCLICommand() (*cliCommand, error) {
	found, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{SkipVersionCheck: true})
	if err != nil {
		return nil, err
	}
	path, err := exec.LookPath("pulumi")
	if err != nil {
		return nil, err
	}
	return &cliCommand{path: path, version: found.Version(), running: map[*os.Process]struct{}{}}, nil
}

func (c *cliCommand) Version() semver.Version { return c.version }

// Run runs one CLI command; the context is not used to stop it (signals are).
func (c *cliCommand) Run(_ context.Context, workdir string, stdin io.Reader,
	additionalOutput, additionalErrorOutput []io.Writer, additionalEnv []string, args ...string,
) (string, string, int, error) {
	if !slices.Contains(args, "--non-interactive") {
		args = append([]string{"--non-interactive"}, args...)
	}
	cmd := exec.Command(c.path, args...)
	cmd.Dir = workdir
	cmd.Env = append(append(os.Environ(), additionalEnv...), "PULUMI_AUTOMATION_API=true")
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = io.MultiWriter(append(additionalOutput, &stdout)...)
	cmd.Stderr = io.MultiWriter(append(additionalErrorOutput, &stderr)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", "", -1, fmt.Errorf("starting %s: %w", c.path, err)
	}
	c.mu.Lock()
	c.running[cmd.Process] = struct{}{}
	c.mu.Unlock()
	err := cmd.Wait()
	c.mu.Lock()
	delete(c.running, cmd.Process)
	c.mu.Unlock()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return stdout.String(), stderr.String(), code, err
}

// forward sends sig to every CLI command now running.
func (c *cliCommand) forward(sig os.Signal) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for proc := range c.running {
		_ = proc.Signal(sig)
	}
	return len(c.running)
}
