using System.CommandLine;
using Paddock.Cli;

return await CliApp.RunAsync(args);
