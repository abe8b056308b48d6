#!/bin/sh
# A scaled replica has no fixed name: unless WEB_HOST is given, advertise this container's own
# address, which the other replicas (forwarding a user's request to its owner) can reach.
set -e
if [ -z "${WEB_HOST}" ]; then
  WEB_HOST="$(hostname -i | cut -d' ' -f1)"
  export WEB_HOST
fi
exec "$@"
