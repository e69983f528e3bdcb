#!/usr/bin/env bash
# One-command set-up: Debian packages (when missing), a virtual environment in
# .venv, the matched torch/torchaudio pair, and speechlstm with its extras.
# Safe to run again: every step is skipped when already done.
#
# VENV and EXTRAS choose another environment: `make test-inference` builds the
# inference-only one with VENV=.venv-infer EXTRAS=dev,mic (no train extra, so
# no torch is installed and none may be present).
# EXTRA_VOICES=1 (`make voices`) also enables Debian's contrib and non-free
# sections and installs mbrola's English voices and SVOX pico: more voices to
# synthesize from (the custom-words bench measures what they bring). Opt-in,
# because those sections hold software under other licences.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-train,mic,tts,dev,embedding,serve}
# torchaudio 2.11 is the newest release and imports only next to torch 2.11;
# the GPU machine ships the same pair.
TORCH_PAIR="torch==2.11.0 torchaudio==2.11.0"
# espeak-ng/flite/festival: offline text-to-speech for synthetic data;
# libportaudio2: sounddevice's microphone backend; pulseaudio: the virtual
# microphone used by the live-mode tests; sox: conversions.
APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
              libportaudio2 sox pulseaudio pulseaudio-utils)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${EXTRA_VOICES:-}" ] && ! dpkg-query -W -f='${Status}' libttspico-utils 2>/dev/null | grep -q "install ok installed"; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  sources=/etc/apt/sources.list.d/speechlstm-contrib-nonfree.sources
  if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: enabling Debian contrib and non-free ($sources)" >&2
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$codename" | $SUDO tee "$sources" >/dev/null
  fi
  echo "setup: installing mbrola (us1 us2 us3 en1 de1) and pico" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-de1 libttspico-utils >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
if [[ ",$EXTRAS," == *,train,* ]]; then
  if ! "$VENV/bin/python" -c "import torch, torchaudio" 2>/dev/null; then
    echo "setup: installing $TORCH_PAIR (about 2.7 GB of wheels)" >&2
    "$VENV/bin/pip" install -q $TORCH_PAIR
  fi
elif "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: $VENV has torch but EXTRAS=$EXTRAS has no train extra: remove $VENV" >&2
  exit 1
fi
echo "setup: installing speechlstm[$EXTRAS] into $VENV" >&2
"$VENV/bin/pip" install -q -e ".[$EXTRAS]"
echo "setup: done; run commands with $VENV/bin/speechlstm or 'source $VENV/bin/activate'" >&2
