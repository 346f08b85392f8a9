package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	gtransport "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// dockerHubKey is where docker keeps Docker Hub credentials.
const dockerHubKey = "https://index.docker.io/v1/"

func credentialKey(reg name.Registry) string {
	if reg.RegistryStr() == name.DefaultRegistry {
		return dockerHubKey
	}
	return reg.RegistryStr()
}

func newLoginCmd(o *globalOptions) *cobra.Command {
	var user, pass string
	var passStdin bool
	cmd := &cobra.Command{
		Use:   "login [-u USER] [--password-stdin] [SERVER]",
		Short: "Log in to a registry, storing credentials as docker does",
		Long: `Check credentials against SERVER (default: Docker Hub) and store them in
~/.docker/config.json ($DOCKER_CONFIG), or in its configured credential helper.`,
		Example: `  echo "$TOKEN" | imgtool login -u ci --password-stdin registry.example.com`,
		Args:    rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := name.DefaultRegistry
			if len(args) == 1 {
				server = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSuffix(args[0], "/"), "https://"), "http://")
			}
			var opts []name.Option
			if o.insecure {
				opts = append(opts, name.Insecure)
			}
			reg, err := name.NewRegistry(server, opts...)
			if err != nil {
				return usageError{fmt.Errorf("login: %w", err)}
			}
			if user, pass, err = askCredentials(cmd, user, pass, passStdin); err != nil {
				return err
			}
			auth := &authn.Basic{Username: user, Password: pass}
			if err := checkLogin(cmd.Context(), reg, auth, o.insecure); err != nil {
				return err
			}
			cf, err := config.Load(config.Dir())
			if err != nil {
				return fmt.Errorf("login: read docker config: %w", err)
			}
			key := credentialKey(reg)
			if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{ServerAddress: key, Username: user, Password: pass}); err != nil {
				return fmt.Errorf("login: store credentials in %s: %w", cf.Filename, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
			return nil
		},
	}
	cmd.Flags().StringVarP(&user, "username", "u", "", "user name")
	cmd.Flags().StringVarP(&pass, "password", "p", "", "password (prefer --password-stdin: this one shows in ps)")
	cmd.Flags().BoolVar(&passStdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func askCredentials(cmd *cobra.Command, user, pass string, passStdin bool) (string, string, error) {
	in := bufio.NewReader(cmd.InOrStdin())
	if passStdin {
		if pass != "" {
			return "", "", usageError{errors.New("login: --password and --password-stdin exclude each other")}
		}
		b, err := io.ReadAll(io.LimitReader(in, 1<<16))
		if err != nil {
			return "", "", fmt.Errorf("login: read password: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	interactive := term.IsTerminal(int(os.Stdin.Fd()))
	if user == "" {
		if !interactive || passStdin {
			return "", "", usageError{errors.New("login: give a user name with -u")}
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Username: ")
		line, err := in.ReadString('\n')
		if err != nil {
			return "", "", fmt.Errorf("login: read user name: %w", err)
		}
		user = strings.TrimSpace(line)
	}
	if pass == "" {
		if !interactive {
			return "", "", usageError{errors.New("login: give the password with --password-stdin")}
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return "", "", fmt.Errorf("login: read password: %w", err)
		}
		pass = string(b)
	}
	return user, pass, nil
}

// checkLogin authenticates against the registry's /v2/ endpoint (the
// token flow included) so that bad credentials are never stored.
func checkLogin(ctx context.Context, reg name.Registry, auth authn.Authenticator, insecure bool) error {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure
	}
	tr, err := gtransport.NewWithContext(ctx, reg, auth, base, []string{reg.Scope(gtransport.PullScope)})
	if err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("login %s: %w", reg, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("login %s: credentials rejected (%s)", reg, resp.Status)
	}
	return nil
}

func newLogoutCmd(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Remove stored credentials for a registry",
		Args:  rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := name.DefaultRegistry
			if len(args) == 1 {
				server = args[0]
			}
			reg, err := name.NewRegistry(server)
			if err != nil {
				return usageError{fmt.Errorf("logout: %w", err)}
			}
			cf, err := config.Load(config.Dir())
			if err != nil {
				return fmt.Errorf("logout: read docker config: %w", err)
			}
			key := credentialKey(reg)
			if _, ok := cf.AuthConfigs[key]; !ok && cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
				return fmt.Errorf("logout: not logged in to %s", key)
			}
			if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", key)
			return nil
		},
	}
}
