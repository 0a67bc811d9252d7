#!/bin/sh
# Installs xarfd from an unpacked release tarball (run it from there, as
# root). DESTDIR installs into a staging root and skips the steps that
# touch the running system (user creation, systemctl).
#   ./install.sh            then edit /etc/xarfd/xarfd.yaml and
#                           systemctl enable --now xarfd
set -eu
cd "$(dirname "$0")"
D="${DESTDIR:-}"
install -d "$D/usr/local/bin" "$D/usr/local/share/man/man8" "$D/usr/local/share/man/man5" \
  "$D/etc/systemd/system" "$D/usr/lib/sysusers.d"
install -m 0755 xarfd "$D/usr/local/bin/xarfd"
install -m 0644 man/xarfd.8 "$D/usr/local/share/man/man8/xarfd.8"
install -m 0644 man/xarfd.yaml.5 "$D/usr/local/share/man/man5/xarfd.yaml.5"
install -m 0644 systemd/xarfd.service "$D/etc/systemd/system/xarfd.service"
install -m 0644 systemd/xarfd.sysusers "$D/usr/lib/sysusers.d/xarfd.conf"
if [ -z "$D" ]; then
  systemd-sysusers /usr/lib/sysusers.d/xarfd.conf
fi
# The configuration directory: root writes, the xarfd group reads.
install -d -m 0750 "$D/etc/xarfd"
if [ -z "$D" ]; then
  chgrp xarfd /etc/xarfd
fi
if [ ! -e "$D/etc/xarfd/xarfd.yaml" ]; then
  install -m 0640 xarfd.yaml.sample "$D/etc/xarfd/xarfd.yaml"
  [ -n "$D" ] || chgrp xarfd /etc/xarfd/xarfd.yaml
  echo "installed a sample /etc/xarfd/xarfd.yaml: edit it, then"
else
  echo "kept the existing /etc/xarfd/xarfd.yaml; check it with"
fi
echo "  xarfd check-config -config /etc/xarfd/xarfd.yaml"
if [ -z "$D" ]; then
  systemctl daemon-reload
  echo "  systemctl enable --now xarfd"
fi
