package main

import (
	"net"
	"os"
)

// sdNotify sends a systemd notification (READY=1, STATUS=…, STOPPING=1) to
// $NOTIFY_SOCKET when systemd started the agent with Type=notify; without
// the variable it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}
