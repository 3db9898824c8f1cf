using System.Formats.Tar;
using System.IO.Compression;
using Paddock.Client.Builds;

namespace Paddock.Client.Tests;

/// <summary>The Dockerfile subset parser and the packing of COPY sources, without a server.</summary>
public sealed class DockerfileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("paddock-dockerfile-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Steps(TemplateBuilder t) => string.Join("\n", t.Steps.Select(s => $"{s.Line}: {s.TypeName} [{string.Join("|", s.Args)}]"));

    [Fact]
    public void Every_instruction_becomes_its_step()
    {
        var t = Dockerfile.Parse("""
            # a comment
            FROM base
            RUN apt-get update
            RUN ["echo", "exec form", "it's"]
            COPY --chown=user:user --chmod=755 app.py lib/ /opt/app/
            ENV A=1 B="two words"
            ENV OLD value with spaces
            WORKDIR /opt/app
            WORKDIR sub
            USER user
            RUN whoami
            COPY data data2
            CMD ["python3", "app.py"]
            """);
        Assert.Equal("base", t.FromTemplateName);
        Assert.Null(t.FromImageName);
        Assert.Equal("""
            3: RUN [apt-get update|root]
            4: RUN [echo 'exec form' 'it'\''s'|root]
            5: COPY [app.py|/opt/app/|user:user|755]
            5: COPY [lib/|/opt/app/|user:user|755]
            6: ENV [A|1|B|two words]
            7: ENV [OLD|value with spaces]
            8: WORKDIR [/opt/app]
            9: WORKDIR [/opt/app/sub]
            10: USER [user]
            11: RUN [whoami|user]
            12: COPY [data|/opt/app/sub/data2|root]
            """.ReplaceLineEndings("\n"), Steps(t));
        Assert.Equal("python3 app.py", t.StartCommand);
        Assert.Null(t.ReadyCommand);
    }

    [Fact]
    public void Continuations_join_lines_and_comments_inside_them_are_dropped()
    {
        var t = Dockerfile.Parse("FROM base\n\nRUN echo one \\\n  # a comment in the middle\n  && echo two \\\n\t&& echo three\nRUN   \\\n  true\n");
        Assert.Equal("3: RUN [echo one   && echo two \t&& echo three|root]\n7: RUN [true|root]", Steps(t));
    }

    [Fact]
    public void Args_are_substituted_with_defaults_and_build_args_win()
    {
        const string text = """
            ARG TAG=base
            FROM ${TAG}
            ARG VERSION=1.0
            ARG EMPTY
            ARG DIR=/opt
            ENV APP_HOME=$DIR/app PLAIN=${UNSET:-fallback}
            WORKDIR ${APP_HOME}
            RUN echo "v$VERSION" '$VERSION' $HOME ${EMPTY:-none} \$VERSION
            COPY file-${VERSION}.txt $APP_HOME/
            """;
        var t = Dockerfile.Parse(text);
        Assert.Equal("base", t.FromTemplateName);
        Assert.Equal("""
            6: ENV [APP_HOME|/opt/app|PLAIN|fallback]
            7: WORKDIR [/opt/app]
            8: RUN [echo "v1.0" '$VERSION' $HOME none \$VERSION|root]
            9: COPY [file-1.0.txt|/opt/app/|root]
            """.ReplaceLineEndings("\n"), Steps(t));

        var given = Dockerfile.Parse(text, new Dictionary<string, string> { ["VERSION"] = "2.5", ["TAG"] = "other" });
        Assert.Equal("other", given.FromTemplateName);
        Assert.Contains("RUN [echo \"v2.5\"", Steps(given), StringComparison.Ordinal);
        Assert.Contains("COPY [file-2.5.txt|", Steps(given), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("scratch", null, "scratch")]
    [InlineData("e2bdev/base", null, "e2bdev/base")]
    [InlineData("e2bdev/base:latest", null, "e2bdev/base")]
    [InlineData("my-imported:1.2", "my-imported:1.2", null)]
    [InlineData("base AS build", "base", null)]
    public void From_names_a_template_an_image_or_scratch(string from, string? template, string? image)
    {
        var t = Dockerfile.Parse($"FROM {from}\n");
        Assert.Equal(template, t.FromTemplateName);
        Assert.Equal(image, t.FromImageName);
    }

    [Theory]
    [InlineData("CMD echo hi", "echo hi")]
    [InlineData("CMD [\"sleep\", \"1000\"]", "sleep 1000")]
    [InlineData("ENTRYPOINT [\"/srv/run\", \"--flag\"]\nCMD [\"a b\"]", "/srv/run --flag 'a b'")]
    [InlineData("ENTRYPOINT [\"/srv/run\"]\nCMD serve now", "/srv/run /bin/sh -c 'serve now'")]
    [InlineData("ENTRYPOINT /srv/run shell\nCMD [\"ignored\"]", "/srv/run shell")]
    [InlineData("CMD first\nCMD second", "second")]
    public void Cmd_and_entrypoint_make_the_start_command(string lines, string expected)
    {
        Assert.Equal(expected, Dockerfile.Parse("FROM base\n" + lines + "\n").StartCommand);
    }

    [Fact]
    public void Metadata_instructions_are_ignored_with_a_warning()
    {
        var t = Dockerfile.Parse("FROM base\nEXPOSE 8080\nLABEL a=b\nUSER user:staff\n");
        Assert.Equal("4: USER [user]", Steps(t));
        Assert.Equal(3, t.Warnings.Count);
        Assert.Contains(t.Warnings, w => w.StartsWith("line 2: EXPOSE", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("RUN true", 1, "before FROM")]
    [InlineData("# only a comment", 0, "no FROM")]
    [InlineData("FROM base\nFROM other", 2, "multi-stage")]
    [InlineData("FROM base\nRUN a\nCOPY --from=build /x /y", 3, "multi-stage")]
    [InlineData("FROM base\nADD https://example.com/x.tgz /x", 2, "ADD of a URL")]
    [InlineData("FROM base\nADD app.tar.gz /x", 2, "archive")]
    [InlineData("FROM base\n\n\nHEALTHCHECK CMD curl localhost", 4, "HEALTHCHECK is not supported")]
    [InlineData("FROM base\nONBUILD RUN x", 2, "ONBUILD is not supported")]
    [InlineData("FROM base\nSHELL [\"bash\", \"-c\"]", 2, "SHELL is not supported")]
    [InlineData("FROM base\nVOLUME /data", 2, "VOLUME is not supported")]
    [InlineData("FROM base\nFROBNICATE x", 2, "unknown instruction 'FROBNICATE'")]
    [InlineData("FROM base\nRUN <<EOF\necho\nEOF", 2, "heredocs")]
    [InlineData("FROM base\nCOPY ../secret /x", 2, "outside the build context")]
    [InlineData("FROM base\nCOPY /etc/passwd /x", 2, "outside the build context")]
    [InlineData("FROM base\nCOPY a/../../b /x", 2, "outside the build context")]
    [InlineData("FROM base\nCOPY --mode=7 a /x", 2, "flag '--mode=7' is not supported")]
    [InlineData("FROM base\nCOPY onlyone", 2, "at least one source and a destination")]
    [InlineData("FROM base\nENV A=\"unclosed", 2, "double quote is not closed")]
    [InlineData("FROM base\nWORKDIR", 2, "needs an argument")]
    [InlineData("FROM --platform=linux/arm64 base", 1, "FROM flags")]
    [InlineData("FROM base\nRUN --mount=type=cache,target=/x true", 2, "RUN flags")]
    [InlineData("FROM base\nENV A=${B:?err}", 2, "':-' and ':+'")]
    public void Bad_input_is_refused_with_its_line(string text, int line, string message)
    {
        var ex = Assert.Throws<DockerfileException>(() => Dockerfile.Parse(text));
        Assert.Equal(line, ex.Line);
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
        if (line > 0)
        {
            Assert.StartsWith($"Dockerfile line {line}: ", ex.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Builder_steps_go_on_the_wire_as_E2B_names_them()
    {
        var t = TemplateBuilder.FromBaseImage().Run("make", "root").Copy("a", "/b", mode: "644").SetEnvs([new("K", "v")]).SetWorkdir("/w").SetUser("u").SetStartCommand("serve", "curl -f localhost");
        Assert.Equal(["RUN", "COPY", "ENV", "WORKDIR", "USER"], t.Steps.Select(s => s.TypeName));
        Assert.Equal(["a", "/b", "", "644"], t.Steps[1].Args);
        Assert.Equal("e2bdev/base", t.FromImageName);
        Assert.Equal("curl -f localhost", t.ReadyCommand);
        Assert.Throws<ArgumentException>(() => t.Copy("a", "/b", mode: "999"));
        Assert.Throws<ArgumentException>(() => t.SetEnvs([new("A=B", "v")]));
    }

    [Fact]
    public async Task Copy_sources_are_packed_relative_to_the_context_with_links_kept()
    {
        Directory.CreateDirectory(Path.Combine(_dir, "app", "sub"));
        File.WriteAllText(Path.Combine(_dir, "app", "main.py"), "print(1)\n");
        File.WriteAllText(Path.Combine(_dir, "app", "sub", "data.txt"), "data\n");
        File.SetUnixFileMode(Path.Combine(_dir, "app", "main.py"), (UnixFileMode)0x1ED);
        File.CreateSymbolicLink(Path.Combine(_dir, "app", "link"), "/etc/passwd");
        File.WriteAllText(Path.Combine(_dir, "one.txt"), "1");
        File.WriteAllText(Path.Combine(_dir, "two.txt"), "2");

        using (var packed = await CopySources.PackAsync(_dir, "app", "/opt/app", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)))
        {
            var entries = ReadTar(packed.ArchivePath);
            Assert.Equal(["app/", "app/link", "app/main.py", "app/sub/", "app/sub/data.txt"], entries.Keys.Order(StringComparer.Ordinal));
            Assert.Equal(TarEntryType.SymbolicLink, entries["app/link"].Type);
            Assert.Equal("/etc/passwd", entries["app/link"].Link);
            Assert.Equal((UnixFileMode)0x1ED, entries["app/main.py"].Mode);
            Assert.Matches("^[0-9a-f]{64}$", packed.Hash);
            var again = await CopySources.PackAsync(_dir, "app", "/opt/app", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(packed.Hash, again.Hash);
            again.Dispose();
            File.WriteAllText(Path.Combine(_dir, "app", "sub", "data.txt"), "changed\n");
            using var changed = await CopySources.PackAsync(_dir, "app", "/opt/app", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.NotEqual(packed.Hash, changed.Hash);
        }
        using (var globbed = await CopySources.PackAsync(_dir, "*.txt", "/x/", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(["one.txt", "two.txt"], ReadTar(globbed.ArchivePath).Keys.Order(StringComparer.Ordinal));
        }
    }

    [Fact]
    public async Task Copy_sources_that_leave_the_context_are_refused()
    {
        var context = Directory.CreateDirectory(Path.Combine(_dir, "ctx")).FullName;
        File.WriteAllText(Path.Combine(_dir, "secret"), "s");
        File.CreateSymbolicLink(Path.Combine(context, "out-file"), "../secret");
        Directory.CreateSymbolicLink(Path.Combine(context, "out-dir"), "/etc");
        File.CreateSymbolicLink(Path.Combine(context, "abs-out"), Path.Combine(_dir, "secret"));
        Directory.CreateDirectory(Path.Combine(context, "in"));
        File.WriteAllText(Path.Combine(context, "in", "f"), "f");
        File.CreateSymbolicLink(Path.Combine(context, "in-link"), "in/f");
        File.CreateSymbolicLink(Path.Combine(context, "abs-in"), Path.Combine(context, "in", "f"));

        foreach (var source in (string[])["out-file", "out-dir/passwd", "out-dir", "abs-out"])
        {
            var ex = await Assert.ThrowsAsync<UnauthorizedAccessException>(() => CopySources.PackAsync(context, source, "/x", CancellationToken.None)).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Contains("outside the build context", ex.Message, StringComparison.Ordinal);
        }
        foreach (var source in (string[])["../secret", "/etc/passwd"])
        {
            await Assert.ThrowsAsync<ArgumentException>(() => CopySources.PackAsync(context, source, "/x", CancellationToken.None)).WaitAsync(TimeSpan.FromSeconds(30));
        }
        await Assert.ThrowsAsync<FileNotFoundException>(() => CopySources.PackAsync(context, "missing*", "/x", CancellationToken.None)).WaitAsync(TimeSpan.FromSeconds(30));

        // A link that stays inside is followed for the source itself: its content is packed under the link's name.
        foreach (var source in (string[])["in-link", "abs-in"])
        {
            using var packed = await CopySources.PackAsync(context, source, "/x", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
            var entry = Assert.Single(ReadTar(packed.ArchivePath));
            Assert.Equal((source, TarEntryType.RegularFile, "f"), (entry.Key, entry.Value.Type, entry.Value.Content));
        }
    }

    private static Dictionary<string, (TarEntryType Type, string? Link, UnixFileMode Mode, string? Content)> ReadTar(string path)
    {
        var entries = new Dictionary<string, (TarEntryType, string?, UnixFileMode, string?)>(StringComparer.Ordinal);
        using var file = File.OpenRead(path);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new TarReader(gzip);
        while (reader.GetNextEntry() is { } entry)
        {
            string? content = null;
            if (entry.DataStream is { } data)
            {
                using var text = new StreamReader(data);
                content = text.ReadToEnd();
            }
            entries[entry.Name] = (entry.EntryType, string.IsNullOrEmpty(entry.LinkName) ? null : entry.LinkName, entry.Mode, content);
        }
        return entries;
    }
}
