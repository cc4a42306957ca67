# shellcheck shell=bash
# Sourced by init.sh: strongSwan charon (unpacked, not installed) + swanctl as an IKEv1 PSK L2TP server.
mkdir -p /etc/l2tpvm
cat >/etc/l2tpvm/strongswan-server.conf <<CONF
charon {
  load = random nonce openssl aes sha1 sha2 md5 hmac gmp kdf pem pkcs1 pubkey x509 kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  # PROPS=aggressive: strongSwan answers Aggressive Mode with a PSK only with this (it exposes a hash of
  # the PSK to offline guessing; the variant exists to test exactly that server).
  i_dont_care_about_security_and_use_aggressive_mode_psk = $([ "${PROPS:-default}" = aggressive ] && echo yes || echo no)
  filelog {
    charon {
      path = $OUT/charon.log
      time_format = %b %e %T
      default = ${CHARONDEBUG:-1}
      flush_line = yes
    }
  }
  syslog { daemon { default = -1 } }
}
CONF
# PFS=yes: every ESP proposal carries a DH group, so a Quick Mode without KE is refused.
ESP_PROPOSALS=aes128-sha1,aes256-sha1,aes128-sha256,aes256-sha256,aes256-sha512,aes128gcm16,aes256gcm16,default
[ "${PFS:-no}" = no ] || ESP_PROPOSALS=aes128-sha1-modp2048,aes256-sha1-modp2048,aes128gcm16-modp2048,aes256gcm16-modp2048
IKE_PROPOSALS=aes256-sha256-modp2048,aes128-sha256-modp2048,aes256-sha1-modp2048,aes128-sha1-modp2048,default
# PROPS=ecp / modp3072: only that group in phase 1 (no "default"), and for ecp PFS in it.
case ${PROPS:-default} in
ecp) IKE_PROPOSALS=aes256-sha256-ecp256 ESP_PROPOSALS=aes128gcm16-ecp256,aes256-sha256-ecp256 ;;
modp3072) IKE_PROPOSALS=aes256-sha256-modp3072 ;;
esac
# PROPS=rekey: the server rekeys on its own, often: a new Quick Mode every 6 s (from the first IPsec SA, so
# also while L2TP and PPP come up) and, IKEv1's form of an IKE SA rekey, a re-authentication every 30 s (before
# TestInteropRekeys' client rekeys its 45 s IKE SA at 40.5 s, so the server's Main Modes do happen): a
# new Main Mode that the server starts towards the client, then new Quick Modes under it, then Deletes for
# the old SAs. Everything else as in the default variant.
# over_time: the IKE SA's hard end comes that long after reauth_time. With 0s both jobs were due at the same
# second and charon sometimes ran the hard end first: every SA deleted, the client reconnects (strongswan:rekey
# 2026-12-02 14:17, "maximum IKE_SA lifetime 30s", no "reauthenticating"). 15 s leaves the re-authentication
# time to finish.
IKE_REKEY=0s IKE_OVER=0s CHILD_REKEY=0s CHILD_LIFE=24h
[ "${PROPS:-default}" != rekey ] || IKE_REKEY=30s IKE_OVER=15s CHILD_REKEY=6s CHILD_LIFE=30s
# PROPS=cert: only RSA signatures with certificates (RFC 2409 §5.1), no PSK at all. The CA and the server's
# certificate and key come from the host (up: make_pki) in /vm/cfg/pki; the client must hold a certificate
# of the same CA. send_cert = ifasked (the default): the client's CERTREQ makes the server send its own.
# fragmentation = yes (the default): IKEv1 fragments to a client that announced them, for messages over
# charon.fragment_size (1280); the 4096-bit certificate and signature in MM6 exceed it.
AUTH_LOCAL="local { auth = psk }" AUTH_REMOTE="remote { auth = psk }" CONN=l2tp-psk
if [ "${PROPS:-default}" = cert ]; then
	mkdir -p /etc/l2tpvm/x509 /etc/l2tpvm/x509ca /etc/l2tpvm/rsa # swanctl: next to --file
	cp /vm/cfg/pki/server.pem /etc/l2tpvm/x509/server.pem
	cp /vm/cfg/pki/ca.pem /etc/l2tpvm/x509ca/ca.pem
	install -m 600 /vm/cfg/pki/server.key /etc/l2tpvm/rsa/server.key
	AUTH_LOCAL="local { auth = pubkey
      certs = server.pem }"
	AUTH_REMOTE="remote { auth = pubkey
      cacerts = ca.pem }"
	CONN=l2tp-cert
fi
# PROPS=aggressive: only Aggressive Mode (aggressive = yes: charon then finds no config for a Main Mode), the
# server's ID the FQDN $SERVER_ID and the client's the FQDN $CLIENT_ID (checked, as a group name is).
AGGR=no
if [ "${PROPS:-default}" = aggressive ]; then
	AGGR=yes
	AUTH_LOCAL="local { auth = psk
      id = $SERVER_ID }"
	AUTH_REMOTE="remote { auth = psk
      id = $CLIENT_ID }"
fi
cat >/etc/l2tpvm/swanctl-server.conf <<CONF
connections {
  $CONN {
    version = 1
    aggressive = $AGGR
    fragmentation = yes
    remote_addrs = %any
    encap = yes
    proposals = $IKE_PROPOSALS
    dpd_delay = 30s
    dpd_timeout = 300s
    rekey_time = 0s
    reauth_time = $IKE_REKEY
    over_time = $IKE_OVER
    rand_time = 0s
    unique = never
    $AUTH_LOCAL
    $AUTH_REMOTE
    children {
      $CONN {
        mode = transport
        local_ts = dynamic[udp/1701]
        remote_ts = dynamic[udp]
        esp_proposals = $ESP_PROPOSALS
        rekey_time = $CHILD_REKEY
        life_time = $CHILD_LIFE
        rand_time = 0s
        dpd_action = clear
      }
    }
  }
}
secrets {
$([ "${PROPS:-default}" = cert ] || printf '  ike-l2tp { secret = "%s" }' "$PSK")
}
CONF
STRONGSWAN_CONF=/etc/l2tpvm/strongswan-server.conf /usr/lib/ipsec/charon >"$OUT/charon-stdout.log" 2>&1 &
for _ in $(seq 1 100); do [ -S /run/charon.vici ] && break; sleep 0.2; done
[ -S /run/charon.vici ] || { echo "charon vici socket missing"; false; }
swanctl --load-all --file /etc/l2tpvm/swanctl-server.conf >"$OUT/swanctl-load.log" 2>&1 ||
	{ cat "$OUT/swanctl-load.log"; false; }
echo "strongswan charon started"
