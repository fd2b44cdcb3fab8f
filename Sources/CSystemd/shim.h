#ifndef TULIP_CSYSTEMD_SHIM_H
#define TULIP_CSYSTEMD_SHIM_H

// Headers only: sd_notify, sd_listen_fds_with_names, sd_watchdog_enabled and sd_journal_sendv
// import cleanly, so no C shim target is needed (STYLE §4.1).
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/uio.h>

#endif
