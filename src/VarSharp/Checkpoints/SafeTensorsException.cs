namespace VarSharp.Checkpoints;

/// <summary>A safetensors file (or a tensor given to the writer) broke <see cref="Rule"/>; the message is one sentence.</summary>
public sealed class SafeTensorsException : VarSharpException
{
    public SafeTensorsException(SafeTensorsRule rule, string message) : base(message) => Rule = rule;

    public SafeTensorsException(SafeTensorsRule rule, string message, Exception inner) : base(message, inner) => Rule = rule;

    public SafeTensorsRule Rule { get; }
}
