//! Phones for tests: a fake `adb` whose answers a test changes while the device runner reads
//! them, as a phone's attachment, battery and temperature change.

use std::path::{Path, PathBuf};

/// A fake `adb` in `dir`: `devices` lists what `devices.txt` beside it says (starting as
/// `listing`, lines of `SERIAL\tdevice`); `-s SERIAL shell …` answers what
/// `facts-SERIAL.txt` says (as `getprop` and `dumpsys battery` would, see [`set_facts`]), or
/// fails as for a phone that does not answer; `-s SERIAL reboot` appends the serial to
/// `reboots.txt` and takes the phone off the listing for a second, as a reboot does.
pub fn fake_adb(dir: &Path, listing: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let adb = dir.join("adb");
    std::fs::write(
        &adb,
        r#"#!/bin/sh
dir="$(dirname "$0")"
if [ "$1" = "-s" ]; then
  case "$3" in
    shell) exec cat "$dir/facts-$2.txt" ;;
    reboot)
      echo "$2" >> "$dir/reboots.txt"
      cp "$dir/devices.txt" "$dir/devices.before-reboot"
      grep -v "^$2[[:space:]]" "$dir/devices.before-reboot" > "$dir/devices.txt"
      (sleep 1; cp "$dir/devices.before-reboot" "$dir/devices.txt") > /dev/null 2>&1 &
      exit 0 ;;
  esac
  echo "fake adb: unknown command $3" >&2
  exit 1
fi
echo 'List of devices attached'
cat "$dir/devices.txt"
"#,
    )
    .expect("the fake adb is written");
    std::fs::set_permissions(&adb, std::fs::Permissions::from_mode(0o755))
        .expect("the fake adb is executable");
    std::fs::write(dir.join("devices.txt"), listing).expect("the adb listing is written");
    adb
}

/// What the fake adb in `dir` answers for phone `serial`'s facts from now on: `dumpsys
/// battery` as Android prints it, at `level` percent and `celsius` degrees. Written whole and
/// renamed, so that adb never reads half of it.
pub fn set_facts(dir: &Path, serial: &str, level: u8, celsius: f64) {
    let tenths = (celsius * 10.0).round() as i64;
    let facts = format!(
        "model=Pixel 7\nandroid=14\nCurrent Battery Service state:\n  AC powered: false\n  \
         USB powered: true\n  status: 2\n  level: {level}\n  scale: 100\n  \
         temperature: {tenths}\n"
    );
    let partial = dir.join(format!("facts-{serial}.partial"));
    std::fs::write(&partial, facts).expect("the facts are written");
    std::fs::rename(partial, dir.join(format!("facts-{serial}.txt")))
        .expect("the facts are in place");
}
