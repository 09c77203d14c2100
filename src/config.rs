//! The runner's settings and credential files on disk (`.runner`, `.credentials`,
//! `.credentials_rsaparams`) in the official runner's formats, plus ghrunner-vm's own settings.
