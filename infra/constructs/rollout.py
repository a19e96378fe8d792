"""Safe rollout: the mappings invoke a `live` alias that CodeDeploy shifts to each new version.

Every deploy that changes the function publishes a version (`current_version` hashes the code asset
and the function's configuration, layers included: see the feature flag in infra/stack.py), and
CloudFormation hands the alias update to CodeDeploy (`CodeDeployLambdaAliasUpdate`), which shifts
invocations as `deployment.rollout` says. Two alarms of its own roll the shift back:
- `<prefix>-rollout-errors`: the alias reported a function error in a minute (the handler raises
  only when a record could be neither delivered nor parked, so one is already wrong);
- `<prefix>-rollout-parked`: more than `rollout.max_parked_per_minute` records reached the bridge
  DLQ in a minute (SQS's NumberOfMessagesSent: counted by SQS, not by the code being rolled out).
The general alarms (infra/constructs/alarms.py) page people; these two only gate rollouts.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from bridge.config import BridgeConfig, Rollout
from constructs import Construct

ALIAS_NAME = "live"
ALARM_PERIOD = Duration.minutes(1)


def deployment_config(scope: Construct, rollout: Rollout) -> codedeploy.ILambdaDeploymentConfig:
    """The CodeDeploy traffic shift for `rollout` (a custom config: percent and interval are the config's)."""
    interval = Duration.minutes(rollout.interval_minutes)
    routing: codedeploy.TrafficRouting
    if rollout.strategy == "all_at_once":
        return codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE
    if rollout.strategy == "canary":
        routing = codedeploy.TimeBasedCanaryTrafficRouting(interval=interval, percentage=rollout.percent)
    else:
        routing = codedeploy.TimeBasedLinearTrafficRouting(interval=interval, percentage=rollout.percent)
    return codedeploy.LambdaDeploymentConfig(scope, "Config", traffic_routing=routing)


class SafeRollout(Construct):
    """The `live` alias, its CodeDeploy deployment group and the two alarms that roll a deploy back."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig, function: lambda_.Function,
                 bridge_dlq: sqs.IQueue) -> None:
        super().__init__(scope, construct_id)
        rollout = config.deployment.rollout
        self.alias = lambda_.Alias(self, "Live", alias_name=ALIAS_NAME, version=function.current_version,
                                   description="What the event-source mappings invoke; CodeDeploy moves it")
        alarm_names = (f"{config.prefix}-rollout-errors", f"{config.prefix}-rollout-parked")
        self.errors_alarm = cloudwatch.Alarm(
            self, "Errors", alarm_name=alarm_names[0],
            alarm_description="ROLLBACK: the live alias reported a function error during a deploy",
            metric=self.alias.metric_errors(period=ALARM_PERIOD, statistic="Sum"),
            threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        self.parked_alarm = cloudwatch.Alarm(
            self, "Parked", alarm_name=alarm_names[1],
            alarm_description=f"ROLLBACK: more than {rollout.max_parked_per_minute} records parked in a minute "
                              "during a deploy",
            metric=bridge_dlq.metric_number_of_messages_sent(period=ALARM_PERIOD, statistic="Sum"),
            threshold=rollout.max_parked_per_minute, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
        alarms = [self.errors_alarm, self.parked_alarm]

        # The managed AWSCodeDeployRoleForLambdaLimited allows these actions on every function and alarm of the
        # account; the role below allows them on this alias and these two alarms only. Passed immutable, so
        # the deployment group cannot attach the managed policy.
        # ARNs built from names, not references: the alias's UpdatePolicy already depends on the group, which
        # depends on this role, so a reference back to the alias (or its alarms) would be a cycle.
        stack = Stack.of(self)
        alias_arn = stack.format_arn(service="lambda", resource="function",
                                     resource_name=f"{function.function_name}:{ALIAS_NAME}",
                                     arn_format=ArnFormat.COLON_RESOURCE_NAME)
        alarm_arns = [stack.format_arn(service="cloudwatch", resource="alarm", resource_name=name,
                                       arn_format=ArnFormat.COLON_RESOURCE_NAME) for name in alarm_names]
        self.role = iam.Role(self, "CodeDeployRole", assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
                             description=f"CodeDeploy: shifts the live alias of {config.prefix}",
                             inline_policies={"rollout": iam.PolicyDocument(statements=[
                                 iam.PolicyStatement(sid="ShiftTheLiveAlias",
                                                     actions=["lambda:GetAlias", "lambda:UpdateAlias",
                                                              "lambda:GetProvisionedConcurrencyConfig"],
                                                     resources=[alias_arn]),
                                 iam.PolicyStatement(sid="ReadTheRollbackAlarms", actions=["cloudwatch:DescribeAlarms"],
                                                     resources=alarm_arns),
                             ])})
        self.group = codedeploy.LambdaDeploymentGroup(
            self, "Group", alias=self.alias, deployment_config=deployment_config(self, rollout), alarms=alarms,
            role=self.role.without_policy_updates(),
            auto_rollback=codedeploy.AutoRollbackConfig(failed_deployment=True, stopped_deployment=True,
                                                        deployment_in_alarm=True))
