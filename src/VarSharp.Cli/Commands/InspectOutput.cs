using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Spectre.Console;
using VarSharp.Checkpoints;

namespace VarSharp.Cli.Commands;

/// <summary>The two renderings of <c>inspect</c>: a table for people and JSON for scripts.</summary>
internal static class InspectOutput
{
    public static void WriteTable(IAnsiConsole console, string path, SafeTensorsHeader header, string? digest)
    {
        var total = header.DataLength;
        var table = new Table()
            .AddColumn(new TableColumn("name").Footer($"{header.Entries.Count} tensors"))
            .AddColumn(new TableColumn("dtype"))
            .AddColumn(new TableColumn("shape"))
            .AddColumn(new TableColumn("bytes").RightAligned().Footer(Number(total)));
        // Text, not markup strings: tensor names such as "blocks[0]" would otherwise be parsed as Spectre styles.
        foreach (var e in header.Entries)
            table.AddRow(new Text(e.Name), new Text(e.DType), new Text(Shape(e.Shape)), new Text(Number(e.ByteLength)));
        table.ShowFooters();

        console.Write(new Text($"{path}\n"));
        console.Write(table);
        console.Write(new Text($"total: {header.Entries.Count} tensors, {Number(total)} bytes ({ByteSize.Format(total)}), header {header.DataStart - 8} bytes\n"));
        if (header.Metadata.Count == 0)
        {
            console.Write(new Text("metadata: none\n"));
        }
        else
        {
            console.Write(new Text("metadata:\n"));
            foreach (var (key, value) in header.Metadata) console.Write(new Text($"  {key}: {value}\n"));
        }
        console.Write(new Text(digest is null ? "sha256: skipped (--no-digest)\n" : $"sha256: {digest}\n"));
    }

    public static void WriteJson(TextWriter output, string path, SafeTensorsHeader header, string? digest)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("file", path);
            if (digest is null) json.WriteNull("sha256");
            else json.WriteString("sha256", digest);
            json.WriteNumber("header_bytes", header.DataStart - 8);
            json.WriteNumber("data_start", header.DataStart);
            json.WriteNumber("tensor_count", header.Entries.Count);
            json.WriteNumber("total_bytes", header.DataLength);
            json.WriteStartObject("metadata");
            foreach (var (key, value) in header.Metadata) json.WriteString(key, value);
            json.WriteEndObject();
            json.WriteStartArray("tensors");
            foreach (var e in header.Entries)
            {
                json.WriteStartObject();
                json.WriteString("name", e.Name);
                json.WriteString("dtype", e.DType);
                json.WriteStartArray("shape");
                foreach (var dim in e.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteNumber("begin", e.Begin);
                json.WriteNumber("end", e.End);
                json.WriteNumber("bytes", e.ByteLength);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static string Shape(long[] shape) => $"[{string.Join(", ", shape)}]";

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
