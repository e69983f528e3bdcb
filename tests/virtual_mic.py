"""A real-time virtual microphone: a private PulseAudio daemon with a 16 kHz null sink
whose monitor is remapped as the default source. WAVs played into
the sink with paplay arrive at sounddevice's default input in real time."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

PA_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-remap-source master=vsink.monitor source_name=vmic
set-default-source vmic
"""


def missing() -> str | None:
    for tool in ("pulseaudio", "paplay", "pactl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install pulseaudio pulseaudio-utils)"
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"sounddevice unusable: {exc}"
    return None


class VirtualMic:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.socket = workdir / "native"
        self.env = {
            **os.environ,
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_RUNTIME_PATH": str(workdir),
            "HOME": str(workdir),
        }
        self.players: list[subprocess.Popen] = []

    def start(self) -> VirtualMic:
        config = self.dir / "vmic.pa"
        config.write_text(PA_CONFIG.format(socket=self.socket))
        subprocess.run(
            [
                "pulseaudio",
                "-n",
                "--daemonize=yes",
                "--exit-idle-time=-1",
                "--use-pid-file=yes",
                "-F",
                str(config),
            ],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=20,
        )
        for _ in range(50):
            ok = subprocess.run(["pactl", "info"], env=self.env, capture_output=True)
            if ok.returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError("virtual microphone did not start")

    def play(self, wav: Path, times: int = 1, gap_s: float = 0.3) -> subprocess.Popen:
        """Play `wav` into the virtual mic `times` times, in the background."""
        script = f'for i in $(seq {times}); do paplay --device=vsink "$1"; sleep {gap_s}; done'
        proc = subprocess.Popen(["bash", "-c", script, "play", str(wav)], env=self.env)
        self.players.append(proc)
        return proc

    def silence(self) -> None:
        """Stop everything still playing (a test must not hear the previous one's audio)."""
        for proc in self.players:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.players.clear()
        subprocess.run(["pkill", "-f", "paplay --device=vsink"], env=self.env, capture_output=True)
        time.sleep(0.3)  # let the sink drain

    def stop(self) -> None:
        self.silence()
        subprocess.run(["pulseaudio", "--kill"], env=self.env, capture_output=True, timeout=20)
