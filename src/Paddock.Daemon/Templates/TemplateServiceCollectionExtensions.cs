using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Templates;

/// <summary>Registration of the template store in the daemon's container.</summary>
internal static class TemplateServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="TemplateStore"/> with the built-in recipes (<c>base</c>, <c>code-interpreter</c>; each built on first use). Settings: <c>Templates:Directory</c>,
    /// else <c>StateDirectory</c>/templates (default /var/lib/paddock/templates). The id mapping is the runc tier's,
    /// since the files are shifted for it.
    /// </summary>
    public static IServiceCollection AddTemplates(this IServiceCollection services, IConfiguration configuration)
    {
        var stateDirectory = configuration.GetSection("Runc")["StateDirectory"] ?? configuration["StateDirectory"] ?? "/var/lib/paddock";
        var directory = configuration.GetSection("Templates")["Directory"] ?? Path.Combine(stateDirectory, "templates");
        services.AddSingleton<ITemplateRecipe>(DebootstrapRecipe.Base);
        services.AddSingleton<ITemplateRecipe>(DebootstrapRecipe.CodeInterpreter);
        services.AddSingleton(sp => new TemplateStore(
            directory,
            IdMapping.Default,
            sp.GetServices<ITemplateRecipe>(),
            sp.GetRequiredService<ILogger<TemplateStore>>()));
        return services;
    }
}
