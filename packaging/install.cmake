# packaging/install.cmake: where everything but the binary goes on
# `cmake --install` (the binary's rule is in CMakeLists.txt): the systemd unit,
# the sysusers.d and tmpfiles.d files, the man pages, the default
# configuration, the bash completion, the Prometheus rules and Grafana
# dashboard (monitoring/) and the README. Included by the top-level CMakeLists.txt; the
# .deb and .rpm builds (packaging/deb, packaging/rpm) stage through it, so a
# file missing here is missing from both packages.
#
# Not for: building anything, or anything that must run as root at install
# time (creating the user, chgrp of the config): that is the packages' job
# (postinst, %pre/%post) or, for a plain source install, the administrator's
# (see packaging/README-section.md).
#
# The three systemd directories can be set on the command line
# (-DSQLPRODD_SYSTEMD_UNIT_DIR=/usr/lib/systemd/system, as the .rpm does). By
# default a distribution install (prefix /usr) asks pkg-config's systemd.pc,
# which knows the distribution's choice (/lib/systemd/system on Debian 12,
# /usr/lib/systemd/system on Fedora); any other prefix gets directories below
# the prefix, which systemd also searches for /usr/local.

set(_sqlprodd_unit_dir_default "lib/systemd/system")
set(_sqlprodd_sysusers_dir_default "lib/sysusers.d")
set(_sqlprodd_tmpfiles_dir_default "lib/tmpfiles.d")
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  pkg_get_variable(_sqlprodd_pc_unit_dir systemd systemdsystemunitdir)
  pkg_get_variable(_sqlprodd_pc_sysusers_dir systemd sysusersdir)
  pkg_get_variable(_sqlprodd_pc_tmpfiles_dir systemd tmpfilesdir)
  if(_sqlprodd_pc_unit_dir)
    set(_sqlprodd_unit_dir_default "${_sqlprodd_pc_unit_dir}")
  endif()
  if(_sqlprodd_pc_sysusers_dir)
    set(_sqlprodd_sysusers_dir_default "${_sqlprodd_pc_sysusers_dir}")
  endif()
  if(_sqlprodd_pc_tmpfiles_dir)
    set(_sqlprodd_tmpfiles_dir_default "${_sqlprodd_pc_tmpfiles_dir}")
  endif()
endif()

set(SQLPRODD_SYSTEMD_UNIT_DIR "${_sqlprodd_unit_dir_default}" CACHE PATH
    "Where sqlprodd.service is installed (relative paths are below the prefix)")
set(SQLPRODD_SYSUSERS_DIR "${_sqlprodd_sysusers_dir_default}" CACHE PATH
    "Where the sysusers.d file is installed (relative paths are below the prefix)")
set(SQLPRODD_TMPFILES_DIR "${_sqlprodd_tmpfiles_dir_default}" CACHE PATH
    "Where the tmpfiles.d file is installed (relative paths are below the prefix)")

# The unit names /usr/sbin/sqlprodd, which is right for every package; an
# install under another prefix gets a copy that names the binary it installs.
set(_sqlprodd_unit_source "${PROJECT_SOURCE_DIR}/packaging/systemd/sqlprodd.service")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_sqlprodd_unit_source}")
file(READ "${_sqlprodd_unit_source}" _sqlprodd_unit_text)
string(REPLACE "/usr/sbin/sqlprodd" "${CMAKE_INSTALL_FULL_SBINDIR}/sqlprodd"
       _sqlprodd_unit_text "${_sqlprodd_unit_text}")
file(CONFIGURE OUTPUT "${PROJECT_BINARY_DIR}/packaging/sqlprodd.service"
     CONTENT "${_sqlprodd_unit_text}" @ONLY)

install(FILES "${PROJECT_BINARY_DIR}/packaging/sqlprodd.service"
        DESTINATION "${SQLPRODD_SYSTEMD_UNIT_DIR}")
install(FILES "${PROJECT_SOURCE_DIR}/packaging/systemd/sqlprodd.sysusers"
        DESTINATION "${SQLPRODD_SYSUSERS_DIR}" RENAME sqlprodd.conf)
install(FILES "${PROJECT_SOURCE_DIR}/packaging/systemd/sqlprodd.tmpfiles"
        DESTINATION "${SQLPRODD_TMPFILES_DIR}" RENAME sqlprodd.conf)

# Plain roff: dh_installman / rpm's brp-compress gzip them.
install(FILES "${PROJECT_SOURCE_DIR}/man/sqlprodd.8" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
install(FILES "${PROJECT_SOURCE_DIR}/man/sqlprodd.conf.5" "${PROJECT_SOURCE_DIR}/man/sqlprodd-format.5"
        DESTINATION "${CMAKE_INSTALL_MANDIR}/man5")

# GNUInstallDirs maps SYSCONFDIR to /etc for the prefix /usr. 0640: the file
# may name buckets and credential files; the packages give it to
# root:sqlprodd so the agent can read it.
install(FILES "${PROJECT_SOURCE_DIR}/etc/sqlprodd.conf"
        DESTINATION "${CMAKE_INSTALL_FULL_SYSCONFDIR}"
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)

# bash-completion loads completions/NAME on demand when NAME is first completed.
install(FILES "${PROJECT_SOURCE_DIR}/completion/sqlprodd.bash"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" RENAME sqlprodd)
# For the fleet's Prometheus and Grafana, not used on this host: copied or
# referenced from there (README, "Monitoring a fleet").
install(FILES "${PROJECT_SOURCE_DIR}/monitoring/sqlprodd.rules.yml"
              "${PROJECT_SOURCE_DIR}/monitoring/sqlprodd.grafana.json"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/sqlprodd/monitoring")

install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION "${CMAKE_INSTALL_DOCDIR}" OPTIONAL)
