// Command pulumi-language-python is a small Python language host for the Pulumi
// CLI, written for this repository.
//
// Why it exists: upstream's language host lives in its own, untagged Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) and the
// Go module proxy this project can reach does not serve any version of it,
// while github.com/pulumi/pulumi/pkg/v3 and sdk/v3 are served. This host is
// built only from those two modules: the gRPC contract (sdk/v3/proto/go), the
// plugin plumbing (sdk/v3/go/common/util/rpcutil) and upstream's own Python
// toolchain handling (sdk/v3/python/toolchain: pip/poetry/uv, virtualenv
// resolution and validation).
//
// It runs programs exactly the way upstream does: the engine starts this binary
// with the engine's address as its last argument; it prints its gRPC port on
// stdout; on Run it starts `python -u pulumi-language-python-exec ...` (the
// script shipped in sdk/v3/python/cmd, installed next to this binary) inside the
// project's virtualenv, passing config through PULUMI_CONFIG and
// PULUMI_CONFIG_SECRET_KEYS.
//
// Interruption follows upstream's host: SIGINT to this process, or the engine
// becoming unreachable, stops the gRPC server; the Cancel RPC (the engine's
// first Ctrl-C) sends the program SIGINT and kills it 5 s later if it is still
// running. (The end of a Run request kills the program at once: see Run.) Unlike upstream, which checks the engine
// every 5 minutes, this host checks it every 2 s, so that after a kill -9 of the
// CLI neither this host nor the program outlives it by more than a few seconds.
//
// Deliberately not implemented (the engine copes, or they are not needed by a
// Python program that uses only dynamic providers): discovery of provider
// plugins from installed pip packages (GetRequiredPackages returns none, so
// resource plugins are loaded on demand), type checking (mypy/pyright), Python
// plugins (RunPlugin), code generation, templates, packing and linking.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/version"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// execScriptName is the Python driver that upstream ships beside the language host.
const execScriptName = "pulumi-language-python-exec"

// engineCheckInterval is how often the host checks that the engine is still there.
const engineCheckInterval = 2 * time.Second

// programGrace is how long a program has to exit after SIGINT before it is killed (upstream's WaitDelay).
const programGrace = 5 * time.Second

// bailExitCode is the exit code with which pulumi-language-python-exec says
// "an error was already shown to the user".
const bailExitCode = 32

func main() {
	// The engine passes the engine address as the last positional argument.
	// Accept (and mostly ignore) the flags other Pulumi language hosts take.
	tracing := flag.String("tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.String("root", "", "Project root path to use")
	flag.String("virtualenv", "", "(ignored: use runtime options in Pulumi.yaml)")
	flag.Parse()

	var engineAddress string
	if args := flag.Args(); len(args) > 0 {
		engineAddress = args[len(args)-1]
	}

	execPath, err := findExecScript()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
		os.Exit(1)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()

	// Exit when the engine goes away, like upstream's hosts do (more often: see above).
	if engineAddress != "" {
		if err := rpcutil.Healthcheck(ctx, engineAddress, engineCheckInterval, cancel); err != nil {
			fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start the engine health check: %v\n", err)
			os.Exit(1)
		}
	}

	host := newPythonHost(ctx, engineAddress, execPath, *tracing)
	cancelChannel := make(chan bool)
	go func() {
		<-ctx.Done()
		cancel() // deregister the signal handler
		host.cancel()
		close(cancelChannel)
	}()
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancelChannel,
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
		Options: rpcutil.OpenTracingServerInterceptorOptions(nil),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: could not start gRPC server: %v\n", err)
		os.Exit(1)
	}

	// The engine reads the port from the first line of stdout.
	fmt.Printf("%d\n", handle.Port)

	err = <-handle.Done
	host.running.Wait()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-python: gRPC server stopped: %v\n", err)
		os.Exit(1)
	}
}

// findExecScript locates pulumi-language-python-exec beside this executable
// (following symlinks), as in upstream's release layout.
func findExecScript() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locating own executable: %w", err)
	}
	candidates := []string{filepath.Join(filepath.Dir(self), execScriptName)}
	if real, err := filepath.EvalSymlinks(self); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(real), execScriptName))
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	if p, err := exec.LookPath(execScriptName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found next to %s or on PATH", execScriptName, self)
}

type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	mu            sync.Mutex
	engineAddress string
	execPath      string
	tracing       string

	cancelCtx context.Context    // done on the Cancel RPC, SIGINT, or when the engine is gone
	cancel    context.CancelFunc // ends cancelCtx
	running   sync.WaitGroup     // programs started by Run and not yet reaped
}

func newPythonHost(ctx context.Context, engineAddress, execPath, tracing string) *pythonHost {
	cancelCtx, cancel := context.WithCancel(ctx)
	return &pythonHost{
		engineAddress: engineAddress, execPath: execPath, tracing: tracing,
		cancelCtx: cancelCtx, cancel: cancel,
	}
}

func (h *pythonHost) engine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.engineAddress
}

// Handshake is used when the engine attaches to an already running host
// (PULUMI_DEBUG_LANGUAGES=python:<port>).
func (h *pythonHost) Handshake(
	ctx context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	h.mu.Lock()
	h.engineAddress = req.GetEngineAddress()
	h.mu.Unlock()
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(ctx context.Context, _ *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version.Version}, nil
}

// GetRequiredPlugins and GetRequiredPackages report nothing: providers are
// loaded on demand when the program registers resources (dynamic resources use
// the bundled pulumi-resource-pulumi-python shim).
func (h *pythonHost) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

func (h *pythonHost) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// runtimeOptions reads the `runtime.options` of Pulumi.yaml.
type runtimeOptions struct {
	virtualenv  string
	toolchain   string
	typechecker string
}

func parseOptions(info *pulumirpc.ProgramInfo) runtimeOptions {
	var opts runtimeOptions
	if info == nil || info.GetOptions() == nil {
		return opts
	}
	m := info.GetOptions().AsMap()
	str := func(k string) string {
		if v, ok := m[k].(string); ok {
			return v
		}
		return ""
	}
	opts.virtualenv = str("virtualenv")
	opts.toolchain = strings.ToLower(str("toolchain"))
	opts.typechecker = strings.ToLower(str("typechecker"))
	return opts
}

func resolveToolchain(info *pulumiInfo) (toolchain.Toolchain, runtimeOptions, error) {
	opts := parseOptions(info.ProgramInfo)
	po := toolchain.PythonOptions{
		Root:       info.root(),
		ProgramDir: info.programDir(),
		Virtualenv: opts.virtualenv,
	}
	switch opts.toolchain {
	case "", "auto":
		po.Toolchain = toolchain.Auto
	case "pip":
		po.Toolchain = toolchain.Pip
	case "poetry":
		po.Toolchain = toolchain.Poetry
	case "uv":
		po.Toolchain = toolchain.Uv
	default:
		return nil, opts, fmt.Errorf("unsupported Python toolchain %q (want pip, poetry or uv)", opts.toolchain)
	}
	switch opts.typechecker {
	case "", "none":
	default:
		return nil, opts, fmt.Errorf(
			"runtime option typechecker=%q is not supported by this build of pulumi-language-python "+
				"(see tools/pulumi-cli/pulumi-language-python)", opts.typechecker)
	}
	tc, err := toolchain.ResolveToolchain(po)
	return tc, opts, err
}

// pulumiInfo wraps ProgramInfo with fallbacks for requests that omit it.
type pulumiInfo struct {
	*pulumirpc.ProgramInfo
	pwd string
}

func (i *pulumiInfo) root() string {
	if i.ProgramInfo != nil && i.GetRootDirectory() != "" {
		return i.GetRootDirectory()
	}
	return i.pwd
}

func (i *pulumiInfo) programDir() string {
	if i.ProgramInfo != nil && i.GetProgramDirectory() != "" {
		return i.GetProgramDirectory()
	}
	return i.pwd
}

func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := &pulumiInfo{ProgramInfo: req.GetInfo(), pwd: req.GetPwd()}
	tc, _, err := resolveToolchain(info)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	program := req.GetProgram()
	if program == "" {
		program = "."
	}
	args := []string{"-u", h.execPath,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engine(),
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
		"--parallel", strconv.Itoa(int(req.GetParallel())),
	}
	if req.GetDryRun() {
		args = append(args, "--dry_run", "true")
	}
	if org := req.GetOrganization(); org != "" {
		args = append(args, "--organization", org)
	}
	if root := info.root(); root != "" {
		args = append(args, "--root_directory", root)
	}
	if h.tracing != "" {
		args = append(args, "--tracing", h.tracing)
	}
	args = append(args, program)
	args = append(args, req.GetArgs()...)

	// Like upstream: on the Cancel RPC (or SIGINT to this host, or the engine gone)
	// the program gets SIGINT, and a kill after programGrace. Unlike upstream, a Run
	// request that merely ends (the engine closing after a failed update) kills the
	// program at once, as this host always did: SIGINT there only printed a
	// KeyboardInterrupt traceback under every failed update.
	runCtx, runCancel := context.WithCancel(h.cancelCtx)
	defer runCancel()
	context.AfterFunc(ctx, runCancel)
	cmd, err := tc.Command(runCtx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Cancel = func() error {
		if h.cancelCtx.Err() == nil {
			return cmd.Process.Kill()
		}
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
	cmd.WaitDelay = programGrace
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	config := req.GetConfig()
	if config == nil {
		config = map[string]string{} // the SDK expects an object, not null
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env,
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	cmd.Dir = req.GetPwd()
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr

	h.running.Add(1)
	err = cmd.Run()
	h.running.Done()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code := exitErr.ExitCode()
			if code == bailExitCode {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{
				Error: fmt.Sprintf("Program exited with non-zero exit code: %d", code),
			}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

// InstallDependencies creates/validates the virtualenv and installs
// requirements with the configured toolchain (used by `pulumi install`).
func (h *pythonHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.GetIsTerminal())
	if err != nil {
		return err
	}
	defer closer.Close()

	info := &pulumiInfo{ProgramInfo: req.GetInfo(), pwd: req.GetDirectory()}
	tc, _, err := resolveToolchain(info)
	if err != nil {
		return err
	}
	ctx := server.Context()
	if err := tc.EnsureVenv(ctx, info.programDir(), req.GetUseLanguageVersionTools(), true, stdout, stderr); err != nil {
		return err
	}
	return tc.InstallDependencies(ctx, info.programDir(), req.GetUseLanguageVersionTools(), true, stdout, stderr)
}

func (h *pythonHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	info := &pulumiInfo{ProgramInfo: req.GetInfo()}
	if info.root() == "" {
		if wd, err := os.Getwd(); err == nil {
			info.pwd = wd
		}
	}
	tc, _, err := resolveToolchain(info)
	if err != nil {
		return nil, err
	}
	about, err := tc.About(ctx)
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{
		Executable: about.PythonExecutable,
		Version:    about.PythonVersion.String(),
	}, nil
}

func (h *pythonHost) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	info := &pulumiInfo{ProgramInfo: req.GetInfo(), pwd: req.GetPwd()}
	tc, _, err := resolveToolchain(info)
	if err != nil {
		return nil, err
	}
	pkgs, err := tc.ListPackages(ctx, req.GetTransitiveDependencies())
	if err != nil {
		return nil, err
	}
	out := make([]*pulumirpc.DependencyInfo, 0, len(pkgs))
	for _, p := range pkgs {
		out = append(out, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: out}, nil
}

// RuntimeOptionsPrompts is asked by `pulumi new`; there is nothing to ask.
func (h *pythonHost) RuntimeOptionsPrompts(
	ctx context.Context, req *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

// Cancel (the engine's first Ctrl-C) interrupts running programs, as upstream's host does.
func (h *pythonHost) Cancel(ctx context.Context, _ *emptypb.Empty) (*emptypb.Empty, error) {
	h.cancel()
	return &emptypb.Empty{}, nil
}
