package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
)

// probeCommand is `l2tpproxy probe URL`: a health check for images that
// have no curl (distroless, scratch): exit 0 if URL answers 200 within
// --timeout, 1 otherwise, with one line saying why.
func probeCommand() *cli.Command {
	return &cli.Command{
		Name:      "probe",
		Usage:     "GET a URL (e.g. the admin endpoint's /readyz) and exit 0 if it answers 200: a container health check without curl",
		ArgsUsage: "URL",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "give up after this long"},
		},
		Action: func(cx *cli.Context) error {
			if cx.NArg() != 1 {
				return configError("probe needs one URL, e.g. http://127.0.0.1:9090/readyz")
			}
			hc := &http.Client{Timeout: cx.Duration("timeout")}
			resp, err := hc.Get(cx.Args().First())
			if err != nil {
				return fmt.Errorf("probe: %w", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("probe: %s answered %s", cx.Args().First(), resp.Status)
			}
			return nil
		},
	}
}
