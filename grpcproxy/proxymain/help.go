package proxymain

import "github.com/spf13/pflag"

// pflagHelp is what Parse returns for -h and --help.
var pflagHelp = pflag.ErrHelp
