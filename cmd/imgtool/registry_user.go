//go:build !imgtool_lean

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgtool/imgtool/registry"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// defaultHtpasswd is where `registry user` keeps users unless told.
func defaultHtpasswd(root string) string { return filepath.Join(root, "registry-htpasswd") }

func newRegistryUserCmd(o *globalOptions) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the users of `registry serve --htpasswd` (bcrypt htpasswd file)",
	}
	cmd.PersistentFlags().StringVar(&file, "htpasswd", "", "the htpasswd file (default <root>/registry-htpasswd)")
	path := func() string {
		if file != "" {
			return file
		}
		return defaultHtpasswd(o.root)
	}

	var passStdin bool
	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Add a user, or change a user's password",
		Long: `Add NAME to the htpasswd file with a bcrypt hash of a password typed at a
prompt (without echo, twice) or read from standard input with
--password-stdin. An existing user gets the new password. A running
` + "`registry serve --htpasswd FILE`" + ` takes the change on its next request.`,
		Example: `  imgtool registry user add alice
  printf '%s' "$PASSWORD" | imgtool registry user add ci --password-stdin --htpasswd /etc/imgtool/htpasswd`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readNewPassword(cmd, passStdin)
			if err != nil {
				return err
			}
			existed, err := registry.SetUser(path(), args[0], pw, bcrypt.DefaultCost)
			if err != nil {
				return fmt.Errorf("registry user add %s: %w", args[0], err)
			}
			verb := "added"
			if existed {
				verb = "changed the password of"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s in %s (serve with --htpasswd %s)\n", verb, args[0], path(), path())
			return nil
		},
	}
	add.Flags().BoolVar(&passStdin, "password-stdin", false, "read the password from standard input (its first line)")

	rm := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a user",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := registry.RemoveUser(path(), args[0]); err != nil {
				return fmt.Errorf("registry user rm: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s\n", args[0], path())
			return nil
		},
	}
	cmd.AddCommand(add, rm)
	return cmd
}

// readNewPassword takes the password from stdin's first line, or from the
// terminal twice without echo.
func readNewPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		pw := strings.TrimRight(line, "\r\n")
		if pw == "" {
			return "", usageError{errors.New("empty password on standard input")}
		}
		return pw, nil
	}
	in, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return "", usageError{errors.New("standard input is not a terminal: give the password with --password-stdin")}
	}
	ask := func(prompt string) (string, error) { return promptNoEcho(in, cmd.ErrOrStderr(), prompt) }
	pw, err := ask("Password: ")
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	again, err := ask("Repeat password: ")
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if pw != again {
		return "", errors.New("the passwords differ; nothing changed")
	}
	if pw == "" {
		return "", errors.New("empty password; nothing changed")
	}
	return pw, nil
}

// promptNoEcho turns the terminal's echo off, then prompts and reads a
// line. term.ReadPassword prompts first and turns echo off after, so keys
// typed (or an expect script's input sent) right after the prompt appears
// could be echoed in between.
func promptNoEcho(in *os.File, w io.Writer, prompt string) (string, error) {
	fd := int(in.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", err
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(w, prompt)
	defer fmt.Fprintln(w)
	var line []byte
	b := make([]byte, 1)
	for len(line) < 4096 {
		n, err := in.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return strings.TrimSuffix(string(line), "\r"), nil
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return string(line), nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", errors.New("password longer than 4096 bytes")
}
