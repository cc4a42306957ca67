// Command l2tpproxy connects to an L2TP/IPsec VPN server entirely in user
// space and exposes it as local SOCKS5 and HTTP proxies.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{Name: "l2tpproxy", Usage: "L2TP/IPsec VPN client as a local SOCKS5/HTTP proxy, no root needed"}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "l2tpproxy:", err)
		os.Exit(1)
	}
}
