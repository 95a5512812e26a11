#!/usr/bin/env bash
# Starts a private Postfix instance on loopback for the interop tests and benchmarks.
#
# Usage: start-instance.sh DIR LISTEN_PORT MODE [RELAY_PORT]
#   MODE relay:   mail for sms.test goes to smsmta at 127.0.0.1:RELAY_PORT (transport map)
#   MODE discard: every message is queued durably, then discarded (the benchmark reference)
# Stop it with: postfix -c DIR stop
# Needs root (Postfix's master drops privileges to the postfix user) and the postfix package.
set -euo pipefail
dir=$1 port=$2 mode=$3 relay=${4:-}
mkdir -p "$dir/queue" "$dir/data"
chown postfix "$dir/data"
if [ "$mode" = relay ]; then
  transport="transport_maps = inline:{ sms.test=smtp:[127.0.0.1]:$relay }"
  dest="relay_domains = sms.test"
else
  transport="default_transport = discard
relay_transport = discard
local_transport = discard"
  dest="mydestination = sms.test, localhost
relay_domains ="
fi
cat > "$dir/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
$dest
$transport
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_connection_cache_on_demand = yes
default_destination_concurrency_limit = 20
CF
cat > "$dir/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
postfix -c "$dir" check >/dev/null 2>&1 || true
postfix -c "$dir" start
