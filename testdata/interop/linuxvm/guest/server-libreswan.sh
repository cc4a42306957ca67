# shellcheck shell=bash
# Sourced by init.sh: Libreswan (pluto) as an IKEv1 PSK L2TP server, in the style of hwdsl2/setup-ipsec-vpn.
# PROPS=ecp / modp3072: only that group in phase 1 (PFS, if required, uses it too).
LS_IKE='aes256-sha2;modp2048,aes128-sha2;modp2048,aes256-sha1;modp2048,aes128-sha1;modp2048'
case ${PROPS:-default} in
ecp) LS_IKE='aes256-sha2;dh19' ;;
modp3072) LS_IKE='aes256-sha2;modp3072' ;;
aggressive) LS_IKE='aes256-sha2;modp2048,aes128-sha2;modp2048,aes256-sha1;modp2048' ;; # one DH group
esac
# PROPS=aggressive: Aggressive Mode only (Libreswan then drops a Main Mode for the conn: "initial Main Mode
# message received but no connection has been authorized"), server ID @FQDN, and the client's ID a group name
# (rightid=@$CLIENT_ID, as Cisco-style Aggressive Mode servers use: with rightid=%any or none, the Aggressive
# Mode instance wants the client's address, "Peer ID ... mismatched", and answers INVALID-ID-INFORMATION).
LS_LEFTID=$SERVER_IP LS_AGGR=no LS_RIGHTID='# rightid: the default'
[ "${PROPS:-default}" != aggressive ] || LS_LEFTID=@$SERVER_ID LS_AGGR=yes LS_RIGHTID="rightid=@$CLIENT_ID"
# PROPS=cert: only RSA signatures with certificates (authby=rsasig, no PSK). The CA and the server's
# certificate and key (server.p12, from the host's make_pki) go into pluto's NSS database; the server's ID is
# its DN (%fromcert) and the client's certificate must be issued by the same CA (rightca=%same).
# fragmentation=force: with =yes pluto sent its 1.8 KB MM6 whole (as IP fragments) although our MM5 came in
# IKE fragments (2026-12-02); force makes it fragment too, so our reassembly is tested against Libreswan.
LS_AUTH="authby=secret"
if [ "${PROPS:-default}" = cert ]; then
	LS_LEFTID=%fromcert
	LS_RIGHTID="rightid=%fromcert"
	LS_AUTH="authby=rsasig
  leftcert=l2tpvm-server
  leftsendcert=always
  leftrsasigkey=%cert
  rightrsasigkey=%cert
  rightca=%same
  fragmentation=force"
fi
cat >/etc/ipsec.conf <<CONF
config setup
  ikev1-policy=accept
  virtual-private=%v4:10.0.0.0/8,%v4:192.168.0.0/16,%v4:172.16.0.0/12,%v4:127.0.0.0/8,%v4:!$PPP_NET
  uniqueids=no
  logfile=$OUT/pluto.log
  logtime=yes
  plutodebug=${PLUTODEBUG:-none}

conn shared
  left=%defaultroute
  leftid=$LS_LEFTID
  aggressive=$LS_AGGR
  right=%any
  $LS_RIGHTID
  encapsulation=yes
  $LS_AUTH
  pfs=${PFS:-no}
  rekey=no
  keyingtries=5
  dpddelay=30
  dpdtimeout=300
  dpdaction=clear
  ikev2=never
  ike=$LS_IKE
  phase2alg=aes_gcm-null,aes128-sha1,aes256-sha1,aes256-sha2_512,aes128-sha2,aes256-sha2
  ikelifetime=24h
  salifetime=24h
  sha2-truncbug=no

conn l2tp-psk
  auto=add
  leftprotoport=17/1701
  rightprotoport=17/%any
  type=transport
  also=shared
CONF
if [ "${PROPS:-default}" = cert ]; then
	: >/etc/ipsec.secrets # no PSK at all: the key is in NSS
else
	printf '%%any %%any : PSK "%s"\n' "$PSK" >/etc/ipsec.secrets
fi
chmod 600 /etc/ipsec.secrets
mkdir -p /run/pluto /var/lib/ipsec/nss
[ -f /var/lib/ipsec/nss/cert9.db ] || ipsec initnss --nssdir /var/lib/ipsec/nss >"$OUT/initnss.log" 2>&1
if [ "${PROPS:-default}" = cert ]; then
	certutil -A -d sql:/var/lib/ipsec/nss -n l2tpvm-ca -t CT,, -i /vm/cfg/pki/ca.pem >>"$OUT/initnss.log" 2>&1 &&
		pk12util -i /vm/cfg/pki/server.p12 -d sql:/var/lib/ipsec/nss -W '' -K '' >>"$OUT/initnss.log" 2>&1 ||
		{ cat "$OUT/initnss.log"; false; }
fi
ipsec pluto --config /etc/ipsec.conf >"$OUT/pluto-start.log" 2>&1 || { cat "$OUT/pluto-start.log"; false; }
for _ in $(seq 1 100); do [ -S /run/pluto/pluto.ctl ] && break; sleep 0.2; done
[ -S /run/pluto/pluto.ctl ] || { echo "pluto control socket missing"; false; }
ipsec whack --listen >>"$OUT/pluto-start.log" 2>&1
ipsec auto --add l2tp-psk >>"$OUT/pluto-start.log" 2>&1 || { cat "$OUT/pluto-start.log"; false; }
ipsec auto --rereadsecrets >>"$OUT/pluto-start.log" 2>&1
echo "libreswan $(ipsec --version 2>/dev/null | head -n1) started"
