#!/usr/bin/env bash
# The test command: builds .venv (once), installs the project with its test extra, runs pytest.
# Starts everything the tests need itself (dev broker, PostgreSQL, workers); needs only Python 3.10+.
# The integration tests run Apache Kafka (KRaft) as plain JVM processes: Java 17+ and Maven fetch its jars from
# Maven Central into ~/.cache/recsys-faust once (recsys-faust kafka fetch); where either is missing and this runs as
# root with apt-get, Debian's packages are installed first.
# The demo-page test drives a headless Chromium (Playwright, executable_path): where none is installed and this runs as root
# with apt-get (CI machines), Debian's chromium is installed first; elsewhere that one test is
# skipped with a message saying so (under CI it fails). The same goes for haproxy and promtool (the deployment checks).
source "$(dirname "$0")/_venv.sh" test
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the demo-page browser test ..."
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }) \
    || echo "!!! could not install chromium: the demo-page browser test will be skipped"
fi
# The deployment checks run HAProxy's and Prometheus's own config checkers (tests/deploy/); the Kafka TLS test
# terminates TLS with stunnel in front of the dev broker.
for tool in haproxy:haproxy promtool:prometheus stunnel4:stunnel4; do
  bin="${tool%%:*}"; pkg="${tool##*:}"
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's $pkg for the deployment checks ..."
    (apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1; }) \
      || echo "!!! could not install $pkg: its config check will be skipped"
  fi
done
need_java=0
java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])' || need_java=1
if { [ "$need_java" = 1 ] || ! command -v mvn >/dev/null 2>&1; } && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's Java 17 and Maven for the Apache Kafka broker ..."
  (apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless maven >/dev/null 2>&1; }) \
    || echo "!!! could not install Java 17 and Maven: the integration tests need Apache Kafka"
fi
# The cross-version backup test restores into Debian's PostgreSQL (another major version than the wheel's).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's PostgreSQL server for the cross-version backup test ..."
  (apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; }) \
    || echo "!!! could not install Debian's postgresql: the cross-version backup test will fail"
fi
.venv/bin/recsys-faust kafka fetch
exec .venv/bin/python -m pytest "$@"
